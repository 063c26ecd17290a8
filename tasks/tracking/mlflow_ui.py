"""How an slmforge experiment opens in the MLflow UI.

Seen in a headless Chromium on mlflow 3.17.2: an experiment page opens in GenAI mode on an empty
traces overview whatever the experiment's `mlflow.experimentKind` tag says: the UI takes the mode
from the URL's `workflowType` (else the browser's last choice, default GenAI). And the runs list
shows parents collapsed, with no metric columns. So an experiment gets:
- the kind tag (value from the UI's own enum in server/js: "custom_model_development"), which the
  UI reads where no mode is chosen and which other tools read;
- a shared view (the UI's "share view" feature: experiment tag `mlflow.sharedViewState.<key>`,
  opened with `?viewStateShareKey=<key>`): only the variant runs, grouped by format, with their
  key figures as columns, smallest first;
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
# Column keys are the UI's: <type>.`<name>`.
KEY_COLUMNS = [*(f"metrics.`{m}`" for m in ("size_bytes", "kld_mean", "perplexity_ratio", "top1_agreement",
                                            "decode_tps", "peak_rss_bytes")),
               "params.`quant`", "params.`format`", "tags.`slmforge.gate`", "tags.`slmforge.tier`",
               "tags.`slmforge.hardware_id`", "tags.`slmforge.reference`"]  # what the KLD is against
VARIANTS_VIEW = {
    "searchFilter": "params.format LIKE '%'",  # variant runs carry `format`; parents do not
    "orderByKey": "metrics.`size_bytes`", "orderByAsc": True, "selectedColumns": KEY_COLUMNS,
    "groupBy": {"aggregateFunction": "min", "groupByKeys": [{"mode": "param", "groupByData": "format"}]},
}


def mark_model_development(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model development (unless its kind was chosen) and store its view."""
    experiment = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    view = json.dumps(VARIANTS_VIEW, sort_keys=True)
    if experiment.tags.get(SHARED_VIEW_TAG + VIEW_KEY) != view:
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + VIEW_KEY, view)


def view_url(tracking_uri: str, experiment_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """The experiment's runs page in model-training mode, opened on the variants view."""
    base = tracking_uri if tracking_uri.startswith("http") else ui
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
