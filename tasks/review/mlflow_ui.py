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
