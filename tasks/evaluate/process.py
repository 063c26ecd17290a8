"""Run one measurement in a fresh Python process and stream its progress back.

A fresh process per measurement: its peak memory is its own, and a crash in native code fails one
variant, not the flow. The worker writes its result file atomically at the end and reports
progress as tagged lines on stdout; stderr goes to a file whose tail explains a failure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from tasks.errors import MeasurementError

PROGRESS_TAG = "SLMFORGE_PROGRESS "
WORKER = "tasks.evaluate.worker"

ProgressCallback = Callable[[str, int, int], None]  # (what, done, total)


def run_worker(request: dict, *, timeout_s: float, on_progress: ProgressCallback | None = None) -> dict:
    """The worker's JSON result, or a MeasurementError naming the request, the cause and the fix."""
    what = f"{request['mode']} worker for {Path(request['model']).name}"
    with tempfile.TemporaryDirectory(prefix="slmforge-worker-") as tmp:
        request_path, result_path, log_path = Path(tmp) / "request.json", Path(tmp) / "result.json", Path(tmp) / "log"
        request_path.write_text(json.dumps(request, default=str))
        command = [sys.executable, "-m", WORKER, str(request_path), str(result_path)]
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
            reader = threading.Thread(target=_forward_progress, args=(proc.stdout, on_progress), daemon=True)
            reader.start()
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise MeasurementError(
                    f"The {what} ran past evaluate.timeout_s={timeout_s:g} s and was stopped; raise the "
                    "timeout or measure fewer chunks (evaluate.max_chunks)."
                ) from None
            reader.join(timeout=5)
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-10:])
        if returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
            hint = " (out of memory: use a host with more RAM or fewer chunks)" if -returncode == signal.SIGKILL else ""
            raise MeasurementError(f"The {what} was killed by {name}{hint}. Last lines:\n{tail}")
        if returncode != 0 or not result_path.is_file():
            raise MeasurementError(f"The {what} failed (exit code {returncode}). Last lines:\n{tail}")
        return json.loads(result_path.read_text())


def _forward_progress(stream, on_progress: ProgressCallback | None) -> None:
    for line in stream:
        if line.startswith(PROGRESS_TAG) and on_progress is not None:
            what, done, total = json.loads(line[len(PROGRESS_TAG):])
            try:
                on_progress(what, done, total)
            except Exception:  # noqa: BLE001 - a display problem must never fail a measurement
                pass


def report_progress(what: str, done: int, total: int) -> None:
    """Called inside a worker: one progress line for the parent (flushed at once)."""
    print(PROGRESS_TAG + json.dumps([what, done, total]), flush=True)
