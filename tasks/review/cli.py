"""`slmforge compare`: the selection from the command line, the answer on the console."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tasks.core.errors import UserError
from tasks.review.compare import CompareSelection
from tasks.review.publish import compare, log_comparison
from tasks.tracking.client import resolve_tracking_uri

SHOWN = ("model", "tier", "hardware_id", "format", "quant", "size_bytes", "bits_per_weight", "perplexity_ratio",
         "kld_mean", "top1_agreement", "decode_tps", "peak_rss_bytes", "gate", "pareto_size", "pareto_decode")


def run_compare(console: Console, *, out: Path, log: bool, **options) -> None:
    """Build the selection, compare, print the table and where the files went."""
    from mlflow.tracking import MlflowClient  # MLflow: heavy, only where runs are read or written

    try:
        selection = CompareSelection(**{k: v or ([] if k in _LISTS else v) for k, v in options.items()})
    except ValidationError as exc:
        raise UserError("; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    result = compare(selection, out)
    if result.table.empty:
        raise UserError(f"no measured variant runs match {_describe(selection)} at "
                        f"{resolve_tracking_uri(selection.tracking_uri)}; run `slmforge run configs/default.yaml` "
                        "first, or widen the selection.")
    console.print(_table(result.table))
    if log:
        client = MlflowClient(tracking_uri=resolve_tracking_uri(selection.tracking_uri))
        log_comparison(result, selection, client=client)
        console.print(f"MLflow comparison run: {result.mlflow_run_id} (experiment {result.experiment_id})", markup=False)
    for name, path in result.files.items():
        console.print(f"{name}: {path}", markup=False)


_LISTS = {"experiments", "models", "hardware", "formats"}


def _describe(selection: CompareSelection) -> str:
    parts = [f"{k}={v}" for k, v in selection.model_dump().items() if k in _LISTS and v]
    return ", ".join(parts) or "the whole store"


def _table(frame) -> Table:
    table = Table(title=f"slmforge comparison ({len(frame)} variants; * = on the Pareto front)")
    for column in SHOWN:
        table.add_column(column.replace("pareto_", "front "), justify="right" if _numeric(frame[column]) else "left")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(row[c]) for c in SHOWN))
    return table


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _numeric(column) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype  # pandas: only where a table is built

    return is_numeric_dtype(column) and not is_bool_dtype(column)


def print_suite(console: Console, result: dict) -> None:
    """The suite's comparison table, where its files went, and any model that failed."""
    import pandas as pd  # pandas: only where a table is built

    rows = result["comparison"]["rows"]
    if rows:
        console.print(_table(pd.DataFrame(rows)))
    for name, path in result["comparison"]["files"].items():
        console.print(f"{name}: {path}", markup=False)
    for model, summary in result["models"].items():
        if summary:
            console.print(f"{model}: MLflow run {summary['mlflow_url']}", markup=False)
    for model, error in result["errors"].items():
        console.print(f"model {model} failed: {error}", style="red", markup=False)
