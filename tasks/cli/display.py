"""What the `slmforge` command prints: the results table, problems, one paragraph per error."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from tasks.core.errors import SlmforgeError
from tasks.core.intervals import Interval
from tasks.core.reference import is_requantization
from tasks.core.secrets import redact
from tasks.evaluate.domains import MAIN_DOMAIN, SUMMARY_KLD

# Piped output (CI logs, `tee`) has no terminal width; a wide fixed width keeps the table whole.
console = Console() if sys.stdout.isatty() else Console(width=220)


def print_problems(config: Path, problems: list[str]) -> None:
    console.print(f"{config}: {len(problems)} problem(s)", style="red", markup=False)
    for problem in problems:
        console.print(f"  - {problem}", markup=False)


def fail(exc: Exception, *, debug: bool, config=None) -> NoReturn:
    """Print one paragraph for `exc` and exit 1; with --debug, re-raise it so its traceback shows."""
    if debug:
        raise exc
    console.print(f"slmforge: {error_message(exc, config)}", style="red", markup=False)
    raise typer.Exit(1) from None


def error_message(exc: Exception, config=None) -> str:
    """Our errors say what to do already; a disk, a tracking server or a bug get their own advice.
    `config` (the loaded PipelineConfig, when there is one) names the store and the tracking URI."""
    from tasks.tracking.client import resolve_tracking_uri  # MLflow: only when a failure names the tracking store

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


def hide_tracebacks_on_console() -> None:
    """Prefect logs a failed flow's traceback on the console; a user error needs only its message.
    Prefect's own database (API log handler) still gets the full record."""
    # Prefect: heavy, only inside a flow run or a worker command
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in (None, *logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _MessageOnly):
                handler.setFormatter(_MessageOnly(handler.formatter or logging.Formatter()))


def print_domains(rows: list[dict]) -> None:
    """Each variant's mean KLD per evaluation domain, where the protocol had domains."""
    names = list(dict.fromkeys(k.split("/", 1)[0] for row in rows for k in row if k.endswith("/kld_mean")))
    if not names:
        return
    main = next((row[MAIN_DOMAIN] for row in rows if row.get(MAIN_DOMAIN)), "main text")
    table = Table(title="kld_mean by evaluation domain (nats; each domain its own chunks)")
    for column in ("format", "quant", main, *names, "all (mean)"):
        table.add_column(column, justify="left" if column in ("format", "quant") else "right")
    for row in rows:
        if row.get("kld_mean") is None:
            continue  # the f16 base (it is the reference) and failed variants
        table.add_row(row["format"], row["quant"], _cell(row.get("kld_mean")),
                      *(_cell(row.get(f"{name}/kld_mean")) for name in names), _cell(row.get(SUMMARY_KLD)))
    console.print(table)


def print_humaneval(rows: list[dict]) -> None:
    """Each variant's HumanEval pass@1 and, against the f16, the problems it lost and gained and whether
    the paired difference is distinguishable from noise, where the protocol ran HumanEval."""
    rows = [row for row in rows if row.get("humaneval_pass_at_1") is not None]
    if not rows:
        return
    table = Table(title="HumanEval pass@1 (greedy; Wilson 95 %) and against the f16 (paired: Newcombe 95 %, McNemar)")
    for column in ("format", "quant", "problems", "pass@1", "95 % interval", "lost", "gained", "difference",
                   "95 % interval ", "McNemar p", "verdict"):
        table.add_column(column, justify="left" if column in ("format", "quant", "verdict") else "right")
    for row in rows:
        low, high = row.get("humaneval_diff_low"), row.get("humaneval_diff_high")
        if row.get("humaneval_diff") is None or low is None or high is None:
            verdict = ""
        elif row["quant"].upper() == "F16" and row["format"] == "gguf":
            verdict = "the f16 itself"
        else:  # the paired rule of every other comparison; a higher pass@1 is better
            verdict = Interval(mean=row["humaneval_diff"], low=low, high=high,
                               chunks=int(row.get("humaneval_problems") or 0)).verdict()
            verdict = {"higher": "better", "lower": "worse"}.get(verdict, verdict)

        table.add_row(row["format"], row["quant"], _cell(row.get("humaneval_problems")),
                      f"{100 * row['humaneval_pass_at_1']:.1f} %",
                      _interval(row.get("humaneval_pass_at_1_low"), row.get("humaneval_pass_at_1_high")),
                      _cell(row.get("humaneval_lost")), _cell(row.get("humaneval_gained")),
                      "-" if row.get("humaneval_diff") is None else f"{100 * row['humaneval_diff']:+.1f} pts",
                      _interval(low, high, signed=True), _cell(row.get("humaneval_mcnemar_p")), verdict)
    console.print(table)


def _interval(low: float | None, high: float | None, *, signed: bool = False) -> str:
    """[low, high] in percent (points, signed, for a difference)."""
    if low is None or high is None:
        return "-"
    form = "{:+.1f}" if signed else "{:.1f}"
    return f"[{form.format(100 * low)}, {form.format(100 * high)}]"


def print_summary(summary: dict, sort_by: str | None = None) -> None:
    columns = ("format", "quant", "size_bytes", "bits_per_weight", "perplexity", "kld_mean",
               "top1_agreement", "prefill_tps", "decode_tps", "ttft_ms", "peak_rss_bytes", "task_score", "gate")
    if summary.get("memory_plan"):
        console.print(f"memory plan  acquire: {summary['memory_plan']}", markup=False)
    for step, seconds in (summary.get("memory_waits") or {}).items():
        console.print(f"memory plan  {step} waited {seconds:.0f} s for memory held by the steps beside it "
                      "(side by side they would not have fitted)", markup=False)
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
    print_domains(rows)
    print_humaneval(rows)
    if is_requantization(summary.get("reference")):
        console.print(f"reference: {summary['reference']}: a quant's KLD is that of re-quantizing the already quantized "
                      "source, not the quantization loss from the original weights", markup=False)
    checks = summary.get("package_checks", {})
    for name, folder in summary["packages"].items():
        verdicts = "; ".join(f"{check.replace('_', ' ')}: {v}" for check, v in checks.get(name, {}).items())
        console.print(f"package  {name}: {folder}" + (f" ({verdicts})" if verdicts else ""), markup=False)
    for name, reasons in summary["gate_failures"].items():
        console.print(f"gate failed  {name}: {'; '.join(reasons)}", markup=False)
    for name, notes in summary.get("gate_within_noise", {}).items():
        console.print(f"gate within noise  {name}: {'; '.join(notes)}", markup=False)
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
