"""Runs back out of any MLflow tracking store, as pandas (MLflow's own search API): the one
reader behind `slmforge compare`, `recommend` and `promote`."""

from __future__ import annotations

from tasks.core.errors import UserError
from tasks.core.intervals import CHUNK_METRIC_PREFIX

# The columns an empty result still has, so that callers can filter and sort it.
EMPTY_COLUMNS = ["run_id", "experiment", "start_time", "status", "tags.mlflow.runName"]


def read_runs(tracking_uri: str, experiments: list[str] | None = None, *, filter_string: str = "",
              order_by: list[str] | None = None):
    """The runs of the named experiments (default: every experiment) as mlflow.search_runs' frame
    (run_id, start_time, status, metrics.*, params.*, tags.*) plus an `experiment` name column."""
    import mlflow  # MLflow: heavy, only where runs are read or written
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    known = {e.name: e.experiment_id for e in client.search_experiments()}
    if missing := [name for name in experiments or [] if name not in known]:
        raise UserError(f"no MLflow experiment named {missing} at {tracking_uri}; the store has "
                        f"{sorted(known) or 'none'}. Pass --experiment with one of those names, "
                        "or point --tracking-uri at another store.")
    ids = [known[name] for name in experiments] if experiments else list(known.values())
    mlflow.set_tracking_uri(tracking_uri)
    frame = mlflow.search_runs(experiment_ids=ids, filter_string=filter_string, order_by=order_by,
                               output_format="pandas") if ids else None
    if frame is None or frame.empty:
        return pd.DataFrame(columns=EMPTY_COLUMNS)
    names = {experiment_id: name for name, experiment_id in known.items()}
    return frame.assign(experiment=frame["experiment_id"].map(names))


def variant_runs(tracking_uri: str, *, experiments: list[str] | None = None, model: str | None = None):
    """Child runs (one per variant) of the named experiments, newest first; `model` keeps
    variants whose name contains it (case-insensitive)."""
    frame = read_runs(tracking_uri, experiments, filter_string="tags.`mlflow.parentRunId` != ''",
                      order_by=["attributes.start_time DESC"])
    if model and not frame.empty:
        frame = frame[frame["tags.mlflow.runName"].str.contains(model, case=False, regex=False)]
    return frame


def runs_frame(runs):
    """MlflowClient.search_runs results as mlflow.search_runs' pandas columns (run_id, start_time,
    status, metrics.*, params.*, tags.*), so one reading of runs serves every review core."""
    import pandas as pd  # pandas: only where a table is built

    rows = [{"run_id": r.info.run_id, "start_time": pd.Timestamp(r.info.start_time, unit="ms"),
             "status": r.info.status, **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
             **{f"params.{k}": v for k, v in r.data.params.items()},
             **{f"tags.{k}": v for k, v in r.data.tags.items()}} for r in runs]
    return pd.DataFrame(rows, columns=None if rows else EMPTY_COLUMNS)


def with_chunk_series(tracking_uri: str, frame, names: tuple[str, ...] = ("kld", "nll")):
    """`frame` with a `chunks.<name>` column per name: each run's per-chunk means, in chunk order, read
    back from their metric histories (tasks.core.intervals); None where a run has none (runs from
    before they were logged, the f16 base's KLD)."""
    from mlflow.tracking import MlflowClient  # MLflow: heavy, only where runs are read

    from tasks.tracking.client import read_series  # with MLflow: only where runs are read

    client, frame = MlflowClient(tracking_uri=tracking_uri), frame.copy()
    for name in names:
        metric = f"{CHUNK_METRIC_PREFIX}{name}"
        present = frame[f"metrics.{metric}"].notna() if f"metrics.{metric}" in frame else [False] * len(frame)
        frame[f"chunks.{name}"] = [
            read_series(client, run_id, metric) if has else None
            for run_id, has in zip(frame["run_id"], present)]
    return frame
