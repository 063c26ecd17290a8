"""The `slmforge` command: run a pipeline config, or validate one."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, help="Small language models to measured, deployable artefacts.")
# Piped output (CI logs, `tee`) has no terminal width; a wide fixed width keeps the table whole.
console = Console() if sys.stdout.isatty() else Console(width=220)
from flows.stack_cli import stack_app, worker_app  # noqa: E402 - beside the app they join

app.add_typer(stack_app, name="stack")
app.add_typer(worker_app, name="worker")
CONFIG_ARG = typer.Argument(..., help="Pipeline config YAML, e.g. configs/default.yaml.")


def _quiet_defaults() -> None:
    # Offline by design: no analytics pings, no hub calls unless a config asks for the hub.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    # The temporary Prefect server (no PREFECT_API_URL) gets 20 s to start by default: too short for
    # a second `slmforge run` starting beside a first one on a busy host (seen: both failed).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


DEBUG_OPTION = typer.Option(False, "--debug", help="Show the Python traceback of a failure (for a bug report).")


@app.command()
def validate(config: Path = CONFIG_ARG, debug: bool = DEBUG_OPTION) -> None:
    """Check a config without heavy work; every problem is reported at once."""
    from tasks.validate import config_problems

    try:
        _, problems = config_problems(config)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    if problems:
        console.print(f"{config}: {len(problems)} problem(s)", style="red", markup=False)
        for problem in problems:
            console.print(f"  - {problem}", markup=False)
        raise typer.Exit(1)
    console.print(f"[green]{config}: valid[/green]")


def _stop_on_sigterm(*_) -> None:
    """The measurement workers first: the threads that wait on them do not see the exit, and would
    keep the process (and the cores) until their measurement ended."""
    from tasks.evaluate.process import stop_all_workers

    stop_all_workers()
    sys.exit(143)


SORT_OPTION = typer.Option(None, "--sort-by", help="Order the results table by this metric, e.g. kld_mean.")


@app.command()
def run(config: Path = CONFIG_ARG, sort_by: str | None = SORT_OPTION, debug: bool = DEBUG_OPTION) -> None:
    """Run acquire -> convert -> quantize -> evaluate -> package and print the results."""
    _quiet_defaults()
    from tasks.errors import VariantsFailedError
    from tasks.review.watch import RegressionError
    from tasks.validate import config_problems

    from tasks.variants import SUMMARY_COLUMNS

    try:
        loaded, problems = config_problems(config)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    if sort_by and sort_by not in SUMMARY_COLUMNS:
        problems.append(f"--sort-by {sort_by!r} is not a results column; use one of {', '.join(SUMMARY_COLUMNS)}")
    if problems:
        console.print(f"{config}: {len(problems)} problem(s)", style="red", markup=False)
        for problem in problems:
            console.print(f"  - {problem}", markup=False)
        raise typer.Exit(1)
    from flows.plan_cli import refuse_unfit

    try:
        refuse_unfit(console, loaded)  # nothing starts that cannot finish
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug, config=loaded)
    from flows.pipeline import pipeline

    if not debug:
        _hide_tracebacks_on_console()
    # A polite stop (systemd, a scheduler, kill) unwinds like Ctrl-C: runs are closed as KILLED.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        summary = pipeline(str(config))
    except (VariantsFailedError, RegressionError) as exc:
        if exc.summary:
            print_summary(exc.summary, sort_by)  # the variants that finished are still worth showing
        _fail(exc, debug=debug, config=loaded)
    except Exception as exc:  # noqa: BLE001 - one paragraph saying what to do; --debug re-raises
        _fail(exc, debug=debug, config=loaded)
    print_summary(summary, sort_by)


@app.command()
def plan(config: Path = CONFIG_ARG, debug: bool = DEBUG_OPTION) -> None:
    """Before running: each step's predicted time, peak memory and disk on this host, and the medium tier's."""
    from flows.plan_cli import run_plan_command

    try:
        status = run_plan_command(console, config)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    raise typer.Exit(status)


DEVICE_OPTION = typer.Option(..., "--device", help="Device profile: a name under configs/devices/ or a YAML path.")
EXPERIMENT_OPTION = typer.Option(None, "--experiment", help="MLflow experiment to read (repeatable; default all).")
MODEL_OPTION = typer.Option(None, "--model", help="Only variants whose name contains this, e.g. smollm2.")
TRACKING_OPTION = typer.Option(None, "--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI, "
                               "else sqlite:///mlruns/mlflow.db).")


@app.command()
def recommend(device: str = DEVICE_OPTION, experiment: list[str] | None = EXPERIMENT_OPTION,
              model: str | None = MODEL_OPTION, tracking_uri: str | None = TRACKING_OPTION,
              debug: bool = DEBUG_OPTION) -> None:
    """The best passing variant that fits a device, from the measured runs, and why better ones did not."""
    _quiet_defaults()
    from tasks.review.devices import load_device
    from tasks.review.recommend import recommend_per_tier
    from tasks.review.search import variant_runs
    from tasks.review.show import print_recommendation
    from tasks.tracking import resolve_tracking_uri

    try:
        profile = load_device(device)
        runs = variant_runs(resolve_tracking_uri(tracking_uri), experiments=experiment, model=model)
        answers = recommend_per_tier(runs, profile)  # one pick per model tier
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    for answer in answers:
        print_recommendation(answer, console)
    if all(answer.pick is None for answer in answers):
        raise typer.Exit(2)


@app.command()
def compare(
    experiment: list[str] = typer.Option(None, "--experiment", help="MLflow experiment name (repeatable; default all)."),
    model: list[str] = typer.Option(None, "--model", help="Model name as in run names, e.g. smollm2-135m-instruct."),
    hardware: list[str] = typer.Option(None, "--hardware", help="Hardware id (tag slmforge.hardware_id; repeatable)."),
    fmt: list[str] = typer.Option(None, "--format", help="Format, e.g. gguf or onnx (repeatable)."),
    quality: str = typer.Option("kld_mean", "--quality", help="kld_mean, kld_p99, perplexity_ratio, delta_p_rms or top1_agreement."),
    out: Path = typer.Option(Path("comparison"), "--out", help="Folder for comparison.csv/.md and the PNG figures."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Any MLflow URI (default $MLFLOW_TRACKING_URI, else the local store)."),
    all_runs: bool = typer.Option(False, "--all-runs", help="Keep every run, not only the newest of each variant."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log a comparison run to MLflow."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Compare measured variants across runs, models, tiers and hardware: table and Pareto figures."""
    _quiet_defaults()
    from tasks.review.cli import run_compare

    try:
        run_compare(console, experiments=experiment, models=model, hardware=hardware, formats=fmt, quality=quality,
                    out=out, tracking_uri=tracking_uri, all_runs=all_runs, log=not no_log)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)


@app.command()
def suite(suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. configs/suites/micro.yaml."),
          debug: bool = DEBUG_OPTION) -> None:
    """Run the pipeline for every model of a suite in one flow, then compare them."""
    _quiet_defaults()
    from tasks.review.cli import print_suite

    try:
        from flows.suite import suite as suite_flow

        result = suite_flow(str(suite_file))
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    print_suite(console, result)
    if result["errors"]:
        raise typer.Exit(1)


@app.command()
def publish(package_dir: Path = typer.Argument(..., help="A package folder printed by `slmforge run`."),
            repo_id: str = typer.Option(..., "--repo-id", help="Hub model repo, e.g. me/smollm2-135m-q4_k_m-gguf."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Print the operations, send nothing."),
            public: bool = typer.Option(False, "--public", help="Create the repo public (default private)."),
            debug: bool = DEBUG_OPTION) -> None:
    """Upload a package with huggingface_hub's commit API (token from HF_TOKEN, never printed)."""
    from tasks.publish import publish as publish_package

    try:
        plan = publish_package(package_dir, repo_id=repo_id, dry_run=dry_run, private=not public)
    except Exception as exc:  # noqa: BLE001 - one paragraph; --debug re-raises
        _fail(exc, debug=debug)
    for item in plan.files:
        console.print(f"{'would add' if plan.dry_run else 'added'} {item.path_in_repo} ({item.size:,} bytes)", markup=False)
    console.print(plan.commit_url or f"dry run: {len(plan.files)} file(s) to {plan.repo_id}", markup=False)


@app.command("check-deploy")
def check_deploy(package_dir: Path = typer.Argument(..., help="A GGUF package folder with deployment files.")) -> None:
    """Run each deployment file's own validator (checkov, kubernetes-validate, promtool, ...)."""
    from tasks.deploy.validate import validate_deployment
    from tasks.deploy.write import VALIDATED

    present = [name for name in VALIDATED if (package_dir / name).is_file()]
    failures = validate_deployment(package_dir, present)
    for name in present:
        console.print(f"{'FAIL' if name in failures else 'ok  '} {name}", markup=False)
        for failure in failures.get(name, []):
            console.print(f"     {failure}", markup=False)
    if failures or not present:
        raise typer.Exit(1)


def _fail(exc: Exception, *, debug: bool, config=None) -> NoReturn:
    """Print one paragraph for `exc` and exit 1; with --debug, re-raise it so its traceback shows."""
    if debug:
        raise exc
    console.print(f"slmforge: {error_message(exc, config)}", style="red", markup=False)
    raise typer.Exit(1) from None


def error_message(exc: Exception, config=None) -> str:
    """Our errors say what to do already; a disk, a tracking server or a bug get their own advice.
    `config` (the loaded PipelineConfig, when there is one) names the store and the tracking URI."""
    from tasks.errors import SlmforgeError
    from tasks.secrets import redact
    from tasks.tracking import resolve_tracking_uri

    store = f" (store_dir is {config.store_dir})" if config is not None else ""
    if isinstance(exc, SlmforgeError):
        return redact(_without_traceback(str(exc), store))
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" at {exc.filename}" if exc.filename else ""
        advice = OS_ERROR_ADVICE.get(exc.errno, "check that path and its disk, then run again")
        return redact(f"{exc.strerror}{where} (errno {exc.errno}); {advice}{store}.")
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    if type(exc).__module__.startswith("mlflow") and config is not None:
        uri = _without_credentials(resolve_tracking_uri(config.tracking.tracking_uri))
        return redact(f"MLflow tracking at {uri} failed: {first_line}; check that the server is up and "
                      "reachable, or set tracking.tracking_uri to another store.")
    return redact(f"unexpected {type(exc).__name__}: {first_line}. This is a bug in slmforge: run again "
                  "with --debug for the traceback, and report it.")


_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_TRACEBACK_NOISE = re.compile(r"^(Traceback \(most recent call last\):|During handling of the above exception|"
                              r"The above exception was the direct cause|\s*[~^]+\s*$)")


def _without_traceback(message: str, store: str = "") -> str:
    """A failed subprocess's tail (worker, converter) often ends in a traceback: keep its last line,
    the exception, and say what to do when it is a full or read-only disk. --debug shows it whole."""
    lines = message.splitlines()
    if not any(_FRAME.match(line) for line in lines):
        return message
    # Frames, the source lines under them (a tail may start with one cut from its frame), carets.
    text = "\n".join(line for line in lines
                     if not (_FRAME.match(line) or line.startswith("    ") or _TRACEBACK_NOISE.match(line)))
    for code, advice in OS_ERROR_ADVICE.items():
        if f"[Errno {code}]" in text:
            return f"{text}\n{advice[0].upper()}{advice[1:]}{store}."
    return text


OS_ERROR_ADVICE = {
    errno.ENOSPC: "free space on that disk, or point store_dir at a disk with room",
    errno.EDQUOT: "free space within your quota, or point store_dir at a disk with room",
    errno.EROFS: "the file system is read-only: point store_dir at a writable folder",
    errno.EACCES: "make the folder writable for this user, or point store_dir at a writable folder",
    errno.EPERM: "make the folder writable for this user, or point store_dir at a writable folder",
}


def _without_credentials(uri: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname and "@" in parts.netloc else uri


class _MessageOnly(logging.Formatter):
    """A console formatter without tracebacks: the log line keeps the error's message."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _hide_tracebacks_on_console() -> None:
    """Prefect logs a failed flow's traceback on the console; a user error needs only its message.
    Prefect's own database (API log handler) still gets the full record."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in (None, *logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _MessageOnly):
                handler.setFormatter(_MessageOnly(handler.formatter or logging.Formatter()))


def print_summary(summary: dict, sort_by: str | None = None) -> None:
    from tasks.reference import is_requantization

    columns = ("format", "quant", "size_bytes", "bits_per_weight", "perplexity", "kld_mean",
               "top1_agreement", "prefill_tps", "decode_tps", "ttft_ms", "peak_rss_bytes", "task_score", "gate")
    if summary.get("memory_plan"):
        console.print(f"memory plan  acquire: {summary['memory_plan']}", markup=False)
    table = Table(title=f"slmforge results ({summary['source']}, tier {summary['tier']})",
                  caption=f"quality figures against: {summary['reference']}" if summary.get("reference") else None)
    for column in columns:
        table.add_column(column, justify="left" if column in ("format", "quant", "gate") else "right")
    rows = summary["rows"]
    if sort_by:
        # Rows without the metric (failed variants, or a metric a format lacks) go last.
        rows = sorted(rows, key=lambda r: (r.get(sort_by) is None, r.get(sort_by) or 0))
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
    if is_requantization(summary.get("reference")):
        console.print(f"reference: {summary['reference']}: a quant's KLD is that of re-quantizing the already quantized "
                      "source, not the quantization loss from the original weights", markup=False)
    checks = summary.get("package_checks", {})
    for name, folder in summary["packages"].items():
        verdicts = "; ".join(f"{check.replace('_', ' ')}: {v}" for check, v in checks.get(name, {}).items())
        console.print(f"package  {name}: {folder}" + (f" ({verdicts})" if verdicts else ""), markup=False)
    for name, reasons in summary["gate_failures"].items():
        console.print(f"gate failed  {name}: {'; '.join(reasons)}", markup=False)
    for cls, result in summary.get("hardware_classes", {}).items():
        figures = result["error"] or "; ".join(
            f"{name}: {value}" if isinstance(value, str) else
            f"{name}: kld {_cell(value.get('kld_mean'))}, decode {_cell(value.get('decode_tps'))} tok/s"
            for name, value in result["variants"].items())
        console.print(f"hardware class {cls} ({result['hardware_id'] or '?'}): {figures}", markup=False)
    if reused := [name for name, flag in summary.get("reused", {}).items() if flag]:
        console.print(f"reused  figures of {len(reused)} variant(s) served from the store, not measured now: "
                      "their runs are tagged slmforge.reused with the original run and time", markup=False)
    for line in summary.get("regressions", []):
        console.print(f"regression  {line}", style="red", markup=False)
    if summary.get("versions_changed"):
        console.print(f"tool versions changed since the previous run: {'; '.join(summary['versions_changed'])}",
                      markup=False)
    for line in summary.get("registry", []):
        console.print(f"registry  {line}", markup=False)
    uri = summary["tracking_uri"]
    console.print(f"MLflow run: {summary['mlflow_url']}", markup=False)
    if summary.get("mlflow_view_url"):
        console.print(f"MLflow variants view: {summary['mlflow_view_url']}", markup=False)
    if not uri.startswith(("http://", "https://")):  # a server shows its own UI at that address
        console.print(f"  open the UI: .venv/bin/mlflow ui --backend-store-uri {uri}", markup=False)
    console.print(f"Prefect flow run: {summary['flow_run_id']}", markup=False)
    if api := os.environ.get("PREFECT_API_URL"):
        console.print(f"  in the UI: {api.removesuffix('/').removesuffix('/api')}/runs/flow-run/{summary['flow_run_id']}",
                      markup=False)
    else:
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
