"""Measured runs back out of any MLflow tracking store, as pandas (MLflow's own search API)."""

from __future__ import annotations

from tasks.errors import UserError


def variant_runs(tracking_uri: str, *, experiments: list[str] | None = None, model: str | None = None):
    """Child runs (one per variant) of the named experiments (default: every experiment), newest
    first; `model` keeps variants whose name contains it (case-insensitive)."""
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if experiments:
        found = {name: client.get_experiment_by_name(name) for name in experiments}
        if missing := [name for name, exp in found.items() if exp is None]:
            known = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise UserError(f"no MLflow experiment {', '.join(map(repr, missing))} in {tracking_uri}; "
                            f"experiments there: {known}")
        ids = [exp.experiment_id for exp in found.values()]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    mlflow.set_tracking_uri(tracking_uri)
    frame = mlflow.search_runs(experiment_ids=ids, filter_string="tags.`mlflow.parentRunId` != ''",
                               output_format="pandas", order_by=["attributes.start_time DESC"]) if ids else None
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["run_id", "start_time", "status", "tags.mlflow.runName"])
    if model:
        frame = frame[frame["tags.mlflow.runName"].str.contains(model, case=False, regex=False)]
    return frame


def runs_frame(runs):
    """MlflowClient.search_runs results as mlflow.search_runs' pandas columns (run_id, start_time,
    status, metrics.*, params.*, tags.*), so one reading of runs serves every review core."""
    import pandas as pd

    rows = [{"run_id": r.info.run_id, "start_time": pd.Timestamp(r.info.start_time, unit="ms"),
             "status": r.info.status, **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
             **{f"params.{k}": v for k, v in r.data.params.items()},
             **{f"tags.{k}": v for k, v in r.data.tags.items()}} for r in runs]
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "start_time", "status", "tags.mlflow.runName"])
