"""MLflow edge: experiments, the parent run of a flow run, one child run per variant.

Only MlflowClient calls with explicit run ids are used: MLflow's "active run" is per thread, and
Prefect runs tasks on a thread pool, so the fluent API would attach runs to the wrong parent.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from filelock import FileLock
from mlflow.entities import Experiment, LifecycleStage, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

from tasks.core.errors import UserError
from tasks.core.secrets import redact

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
# Public metric names (DESIGN.md); other numeric results are logged too, these are the contract.
CONTRACT_METRICS = (
    "size_bytes", "bits_per_weight", "perplexity", "kld_mean", "kld_p99", "top1_agreement",
    "delta_p_rms", "prefill_tps", "decode_tps", "ttft_ms", "load_s", "peak_rss_bytes", "decode_efficiency",
)


def resolve_tracking_uri(configured: str | None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def prepare_store(tracking_uri: str) -> None:
    """Create or upgrade a SQLite store's tables under a lock. MLflow creates them on first use,
    and two processes doing that at once on a new file both run the migrations: one fails with
    "duplicate column name" (seen with two `slmforge run` started together)."""
    if not tracking_uri.startswith("sqlite:///"):
        return  # a server or another database migrates itself once

    db = Path(tracking_uri.removeprefix("sqlite:///")).expanduser()
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.init.lock"):
        MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """Experiment id for `name`, created with artefacts under mlruns/ for the default store.

    Safe when several runs start at once: looking up then creating is a race (both see no
    experiment, both create, one fails), so a create refused with RESOURCE_ALREADY_EXISTS means
    another run won it, and the experiment it made is used.
    """
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=experiment_artifact_location(tracking_uri, name))
        except MlflowException as exc:
            found = _created_meanwhile(client, name, exc)
    if found.lifecycle_stage == LifecycleStage.DELETED:
        # A deleted experiment keeps its name: runs cannot be created in it, nor can a new one be.
        raise UserError(
            f"MLflow experiment {name!r} (id {found.experiment_id}) was deleted; restore it with "
            f"`mlflow experiments restore --experiment-id {found.experiment_id}` (with "
            f"MLFLOW_TRACKING_URI={redact(tracking_uri)}), or set tracking.experiment to another name."
        )
    return found.experiment_id


def _created_meanwhile(client: MlflowClient, name: str, error: MlflowException) -> Experiment:
    """The experiment another caller created between our lookup and our create, else `error`."""
    found = None
    if error.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
        found = client.get_experiment_by_name(name)
    if found is None:  # another failure, or "exists" yet not found: MLflow's own error says more
        raise error
    return found


def experiment_artifact_location(tracking_uri: str, name: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        # A sqlite store (relative or absolute path) keeps its artefacts beside it, not in the
        # current folder's ./mlruns or ./mlartifacts.
        db_dir = Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent
        return (db_dir / "artifacts" / name).as_uri()
    return None


def start_run(client: MlflowClient, experiment_id: str, *, name: str, tags: dict[str, str],
              parent_run_id: str | None = None) -> str:
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id


def log_values(client: MlflowClient, run_id: str, *, params: dict | None = None,
               metrics: dict | None = None, tags: dict | None = None) -> None:
    """One batch call; params/tags are redacted, non-finite or non-numeric metrics skipped."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _finite(v)],
        params=[Param(k, redact(str(v))[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k, redact(str(v))) for k, v in (tags or {}).items()],
    )


def log_series(client: MlflowClient, run_id: str, series: dict[str, list[float]], *, prefix: str) -> None:
    """Each list as one metric's history, its index as the step: `<prefix><name>` per chunk (the MLflow
    UI draws it as a chart; tasks.review.search.chunk_series reads it back)."""
    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}{name}", float(v), now, step) for name, values in series.items()
               for step, v in enumerate(values) if _finite(v)]
    for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics per call
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


def read_series(client: MlflowClient, run_id: str, metric: str) -> list[float]:
    """A metric history logged by log_series, in step order."""
    return [m.value for m in sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_files(client: MlflowClient, run_id: str, paths: list[Path], subdir: str | None = None) -> None:
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=subdir)


def run_url(tracking_uri: str, experiment_id: str, run_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """Where the run is in the MLflow UI (local UI address for file/sqlite stores)."""
    base = tracking_uri if tracking_uri.startswith("http") else ui
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
