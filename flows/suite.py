"""Several models in one flow: the pipeline per model (subflows), then one comparison across them.

Wiring only: the suite's config files come from tasks.suite, the comparison from
tasks.review.publish. A model whose variants fail does not stop the others.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, runtime, task

from flows.pipeline import pipeline
from tasks.core.errors import SlmforgeError, VariantsFailedError
from tasks.review.compare import CompareSelection
from tasks.review.publish import compare, log_comparison, publish_prefect
from tasks.suite import load_suite, write_model_configs
from tasks.tracking.client import resolve_tracking_uri


@task(name="compare-models")
def compare_task(selection: CompareSelection, out_dir: Path) -> dict:
    """Table and figures of the suite's variants, logged on a comparison run and as artifacts."""
    from mlflow.tracking import MlflowClient  # MLflow: heavy, only where runs are read or written

    uri = resolve_tracking_uri(selection.tracking_uri)
    result = compare(selection, out_dir)
    if not result.table.empty:
        log_comparison(result, selection, client=MlflowClient(tracking_uri=uri))
    publish_prefect(result, tracking_uri=uri)
    return {"rows": result.table.drop(columns=["start_time"]).astype(object).where(result.table.notna(), None)
            .to_dict("records"), "files": {k: str(v) for k, v in result.files.items()},
            "mlflow_run_id": result.mlflow_run_id, "experiment_id": result.experiment_id}


@flow(name="slmforge-suite")
def suite(suite_path: str = "configs/suites/micro.yaml") -> dict:
    """Run every model of the suite, then compare them; returns each model's summary and the comparison."""
    path = Path(suite_path)
    config = load_suite(path)
    out_dir = config.out_dir / config.name
    configs = write_model_configs(config, path, out_dir / f"configs-{str(runtime.flow_run.id)[:8]}")
    summaries, errors = {}, {}
    for model_config in configs:
        try:
            summaries[model_config.stem] = pipeline(str(model_config))
        except VariantsFailedError as exc:  # measured variants still count in the comparison
            summaries[model_config.stem], errors[model_config.stem] = exc.summary, str(exc)
        except SlmforgeError as exc:
            errors[model_config.stem] = str(exc)
            get_run_logger().error("suite %s: model %s failed: %s", config.name, model_config.stem, exc)
    parents = [s["mlflow_run_id"] for s in summaries.values() if s]
    tracking_uri = config.tracking_uri or next((s["tracking_uri"] for s in summaries.values() if s), None)
    selection = CompareSelection(tracking_uri=tracking_uri, parent_run_ids=parents, quality=config.quality,
                                 all_runs=True)
    comparison = compare_task(selection, out_dir) if parents else {"rows": [], "files": {}}
    return {"models": summaries, "errors": errors, "comparison": comparison, "suite": config.name}
