"""Where a comparison goes: files on disk, a comparison run in MLflow, Prefect artifacts, and
the figures of one pipeline run logged on its own parent run."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tasks.review.compare import (
    CompareSelection, chunk_kld_by_run, search_variant_runs, variant_table, with_pareto_flags, write_tables,
)
from tasks.review.figures import comparison_figures, save_figures
from tasks.tracking.client import ensure_experiment, log_values, run_url, start_run
from tasks.tracking.mlflow_ui import mark_model_development

COMPARISON_EXPERIMENT = "slmforge-comparisons"
LOG = logging.getLogger(__name__)


@dataclass
class Comparison:
    """What one comparison produced."""

    table: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    experiment_id: str | None = None


def compare(selection: CompareSelection, out_dir: Path) -> Comparison:
    """Search, tabulate, draw and write the files for `selection` (no MLflow writes)."""
    raw = search_variant_runs(selection)
    table = with_pareto_flags(variant_table(raw, selection), selection.quality, chunk_kld_by_run(raw))
    files = write_tables(table, out_dir)
    if not table.empty:
        files.update(save_figures(comparison_figures(table, selection.quality), out_dir))
    return Comparison(table=table, files=files)


def log_comparison(result: Comparison, selection: CompareSelection, *, client: MlflowClient,
                   experiment: str = COMPARISON_EXPERIMENT) -> str:
    """A run of its own in `experiment` holding the table (log_table) and the figures (log_figure)."""
    experiment_id = ensure_experiment(client, experiment, client.tracking_uri)
    mark_model_development(client, experiment_id)
    run_id = start_run(client, experiment_id, name=f"compare-{time.strftime('%Y%m%d-%H%M%S')}",
                       tags={"slmforge.kind": "comparison"})
    log_values(client, run_id, params={
        "experiments": ",".join(selection.experiments) or "all", "models": ",".join(selection.models) or "all",
        "hardware": ",".join(selection.hardware) or "all", "formats": ",".join(selection.formats) or "all",
        "quality": selection.quality, "variants": len(result.table)}, metrics={"variants": len(result.table)})
    log_to_run(client, run_id, result, selection.quality)
    client.set_terminated(run_id, "FINISHED")
    result.mlflow_run_id, result.experiment_id = run_id, experiment_id
    return run_id


def log_to_run(client: MlflowClient, run_id: str, result: Comparison, quality: str) -> None:
    """Table and figures as artefacts of `run_id` under comparison/ (the MLflow UI shows both)."""
    if result.table.empty:
        return
    client.log_table(run_id, data=result.table.astype(object).where(result.table.notna(), None),
                     artifact_file="comparison/comparison.json")
    for name, fig in comparison_figures(result.table, quality).items():
        client.log_figure(run_id, fig, f"comparison/{name}.png")
        import matplotlib.pyplot as plt  # matplotlib: only where figures are drawn

        plt.close(fig)
    for kind in ("csv", "md"):
        if kind in result.files:
            client.log_artifact(run_id, str(result.files[kind]), artifact_path="comparison")


def log_parent_figures(client: MlflowClient, tracking_uri: str, parent_run_id: str) -> Comparison:
    """The figures of one pipeline run's own variants, logged on its parent run."""
    selection = CompareSelection(tracking_uri=tracking_uri, parent_run_ids=[parent_run_id], all_runs=True)
    with tempfile.TemporaryDirectory(prefix="slmforge-figures-") as tmp:
        result = compare(selection, Path(tmp))
        log_to_run(client, parent_run_id, result, selection.quality)
    return result


def publish_prefect(result: Comparison, *, tracking_uri: str, key: str = "slmforge-comparison") -> None:
    """The table and where the figures are, on the current Prefect flow run (no-op outside one)."""
    # Prefect: heavy, only inside a flow run or a worker command
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import get_run_context
    from prefect.exceptions import MissingContextError

    try:
        get_run_context()
    except MissingContextError:  # the CLI's `compare` runs outside any flow: nothing to attach to
        return
    rows = result.table.drop(columns=["start_time"]).astype(object)
    create_table_artifact(rows.where(rows.notna(), None).to_dict("records"), key=key, description="Compared variants")
    lines = [f"- `{name}`: {path}" for name, path in result.files.items()]
    if result.mlflow_run_id:
        url = run_url(tracking_uri, result.experiment_id, result.mlflow_run_id)
        lines.append(f"- MLflow comparison run (figures under artifacts/comparison): [{url}]({url})")
    create_markdown_artifact("## slmforge comparison\n\n" + "\n".join(lines), key=f"{key}-figures",
                             description="Comparison figures")


def log_run_figures(client: MlflowClient, tracking_uri: str, parent_run_id: str) -> None:
    """The comparison figures of a pipeline run's own variants, as artefacts of its parent run.

    A figure is a view of figures already logged: if drawing fails, the run keeps its results
    and says why on a tag, instead of failing a run whose measurements are all there.
    """
    try:
        log_parent_figures(client, tracking_uri, parent_run_id)
    except Exception as exc:  # noqa: BLE001 - recorded on the run and in the log
        LOG.warning("comparison figures of run %s not logged: %s", parent_run_id, exc)
        log_values(client, parent_run_id, tags={"slmforge.figures_error": f"{type(exc).__name__}: {exc}"[:2000]})
