"""The `slmforge` command: run a pipeline config, or validate one."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, help="Small language models to measured, deployable artefacts.")
# Piped output (CI logs, `tee`) has no terminal width; a wide fixed width keeps the table whole.
console = Console() if sys.stdout.isatty() else Console(width=220)
CONFIG_ARG = typer.Argument(..., help="Pipeline config YAML, e.g. configs/default.yaml.")


def _quiet_defaults() -> None:
    # Offline by design: no analytics pings, no hub calls unless a config asks for the hub.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")


@app.command()
def validate(config: Path = CONFIG_ARG) -> None:
    """Check a config without heavy work; every problem is reported at once."""
    from tasks.validate import config_problems

    _, problems = config_problems(config)
    if problems:
        console.print(f"[red]{config}: {len(problems)} problem(s)[/red]")
        for problem in problems:
            console.print(f"  - {problem}", markup=False)
        raise typer.Exit(1)
    console.print(f"[green]{config}: valid[/green]")


SORT_OPTION = typer.Option(None, "--sort-by", help="Order the results table by this metric, e.g. kld_mean.")


@app.command()
def run(config: Path = CONFIG_ARG, sort_by: str | None = SORT_OPTION) -> None:
    """Run acquire -> convert -> quantize -> evaluate -> package and print the results."""
    _quiet_defaults()
    from tasks.errors import SlmforgeError, VariantsFailedError
    from tasks.validate import config_problems

    from tasks.variants import SUMMARY_COLUMNS

    _, problems = config_problems(config)
    if sort_by and sort_by not in SUMMARY_COLUMNS:
        problems.append(f"--sort-by {sort_by!r} is not a results column; use one of {', '.join(SUMMARY_COLUMNS)}")
    if problems:
        for problem in problems:
            console.print(f"  - {problem}", markup=False)
        raise typer.Exit(1)
    from flows.pipeline import pipeline

    # A polite stop (systemd, a scheduler, kill) unwinds like Ctrl-C: runs are closed as KILLED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        summary = pipeline(str(config))
    except VariantsFailedError as exc:
        if exc.summary:
            print_summary(exc.summary, sort_by)  # the variants that finished are still worth showing
        console.print(f"[red]slmforge: {exc}[/red]", markup=True)
        raise typer.Exit(1) from None
    except SlmforgeError as exc:
        console.print(f"[red]slmforge: {exc}[/red]", markup=True)
        raise typer.Exit(1) from None
    print_summary(summary, sort_by)


def print_summary(summary: dict, sort_by: str | None = None) -> None:
    columns = ("format", "quant", "size_bytes", "bits_per_weight", "perplexity", "kld_mean",
               "top1_agreement", "prefill_tps", "decode_tps", "ttft_ms", "peak_rss_bytes", "task_score", "gate")
    table = Table(title=f"slmforge results ({summary['source']}, tier {summary['tier']})")
    for column in columns:
        table.add_column(column, justify="left" if column in ("format", "quant", "gate") else "right")
    rows = summary["rows"]
    if sort_by:
        # Rows without the metric (failed variants, or a metric a format lacks) go last.
        rows = sorted(rows, key=lambda r: (r.get(sort_by) is None, r.get(sort_by) or 0))
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
    for name, folder in summary["packages"].items():
        console.print(f"package  {name}: {folder}", markup=False)
    for name, reasons in summary["gate_failures"].items():
        console.print(f"gate failed  {name}: {'; '.join(reasons)}", markup=False)
    uri = summary["tracking_uri"]
    console.print(f"MLflow run: {summary['mlflow_url']}", markup=False)
    console.print(f"  open the UI: .venv/bin/mlflow ui --backend-store-uri {uri}", markup=False)
    console.print(f"Prefect flow run: {summary['flow_run_id']}", markup=False)
    console.print("  open the UI: .venv/bin/prefect server start  (then http://127.0.0.1:4200/runs)", markup=False)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
