"""How an slmforge experiment opens in the MLflow UI.

MLflow 3's UI guesses an experiment's kind and, with no guess, opens GenAI mode on an empty traces
page. The experiment tag `mlflow.experimentKind` (values in the UI's own enum, mlflow 3.17.2
server/js: "genai_development", "custom_model_development", ...) settles it: our experiments are
model development (runs, metrics, artefacts), so they open on the runs views.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


def mark_model_development(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model development, unless someone already chose its kind."""
    experiment = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)


def log_run_figures(client: MlflowClient, tracking_uri: str, parent_run_id: str) -> None:
    """The comparison figures of a pipeline run's own variants, as artefacts of its parent run.

    A figure is a view of figures already logged: if drawing fails, the run keeps its results
    and says why on a tag, instead of failing a run whose measurements are all there.
    """
    import logging

    from tasks.review.publish import log_parent_figures
    from tasks.tracking import log_values

    try:
        log_parent_figures(client, tracking_uri, parent_run_id)
    except Exception as exc:  # noqa: BLE001 - recorded on the run and in the log
        logging.getLogger(__name__).warning("comparison figures of run %s not logged: %s", parent_run_id, exc)
        log_values(client, parent_run_id, tags={"slmforge.figures_error": f"{type(exc).__name__}: {exc}"[:2000]})
