"""How an slmforge experiment opens in the MLflow UI.

Seen in a headless Chromium on mlflow 3.17.2: an experiment page opens in GenAI mode on an empty
traces overview whatever the experiment's `mlflow.experimentKind` tag says: the UI takes the mode
from the URL's `workflowType` (else the browser's last choice, default GenAI). And the runs list
shows parents collapsed, with no metric columns. So an experiment gets:
- the kind tag (value from the UI's own enum in server/js: "custom_model_development"), which the
  UI reads where no mode is chosen and which other tools read;
- a shared view (the UI's "share view" feature: experiment tag `mlflow.sharedViewState.<key>`,
  opened with `?viewStateShareKey=<key>`): only the variant runs, grouped by format, with their
  key figures as columns, smallest first; each variant once: a warm re-run's children, whose
  figures were reused from the store (tag `slmforge.reused=true`), are left out by the view's
  search filter, and a second view (`ALL_VIEW_KEY`, or clearing that one clause) shows them;
and every link slmforge prints opens that view in model-training mode (`view_url`).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
VIEW_KEY = "slmforge-variants"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key; the UI's own prefix
# Column keys are the UI's: <type>.`<name>`. The quant first: the UI cuts run names before it.
KEY_COLUMNS = ["params.`quant`", "params.`format`",
               *(f"metrics.`{m}`" for m in ("size_bytes", "kld_mean", "perplexity_ratio", "top1_agreement",
                                            "decode_tps", "decode_tps_rel", "peak_rss_bytes")),
               "tags.`slmforge.gate`", "tags.`slmforge.tier`", "tags.`slmforge.hardware_id`",
               "tags.`slmforge.reference`",  # what the KLD is against
               "params.`eval_text`"]  # the tokens it was measured on
ALL_VIEW_KEY = "slmforge-variants-all"
MEASURED_ONLY = "tags.`slmforge.reused` = 'false'"  # every child carries the tag; 'true' on reused figures
VARIANTS_VIEW = {
    "searchFilter": f"params.format LIKE '%' AND {MEASURED_ONLY}",  # variant runs carry `format`; parents do not
    "orderByKey": "metrics.`size_bytes`", "orderByAsc": True, "selectedColumns": KEY_COLUMNS,
    "groupBy": {"aggregateFunction": "min", "groupByKeys": [{"mode": "param", "groupByData": "format"}]},
}
ALL_VARIANTS_VIEW = {**VARIANTS_VIEW, "searchFilter": "params.format LIKE '%'"}


def mark_model_development(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model development (unless its kind was chosen) and store its view."""
    experiment = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    for key, state in ((VIEW_KEY, VARIANTS_VIEW), (ALL_VIEW_KEY, ALL_VARIANTS_VIEW)):
        view = json.dumps(state, sort_keys=True)
        if experiment.tags.get(SHARED_VIEW_TAG + key) != view:
            client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, view)


def view_url(tracking_uri: str, experiment_id: str, ui: str = "http://127.0.0.1:5000", *,
             key: str = VIEW_KEY) -> str:
    """The experiment's runs page in model-training mode, opened on the variants view (each variant
    once; `key=ALL_VIEW_KEY`: reused re-runs too)."""
    base = tracking_uri if tracking_uri.startswith("http") else ui
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": key})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
