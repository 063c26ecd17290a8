"""Run one measurement in a fresh Python process and stream its progress back.

A fresh process per measurement: its peak memory is its own, and a crash in native code fails one
variant, not the flow. The worker writes its result file atomically at the end and reports
progress as tagged lines on stdout; stderr goes to a file whose tail explains a failure.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tasks.core.errors import MeasurementError
from tasks.hosts import hostlock
from tasks.plan.limits import killed_by_signal_message, read_memory_limit

PROGRESS_TAG = "SLMFORGE_PROGRESS "
WORKER = "tasks.evaluate.worker"

ProgressCallback = Callable[[str, int, int], None]  # (what, done, total)
# The exit status of a worker whose parent died under it.
EXIT_PARENT_GONE = 75
# The pid of the process that started the worker (set by run_worker).
PARENT_ENV = "SLMFORGE_WORKER_PARENT"

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def run_worker(request: dict, *, timeout_s: float, on_progress: ProgressCallback | None = None) -> dict:
    """The worker's JSON result, or a MeasurementError naming the request, the cause and the fix."""
    what = f"{request['mode']} worker for {Path(request['model']).name}"
    with tempfile.TemporaryDirectory(prefix="slmforge-worker-") as tmp:
        request_path, result_path, log_path = Path(tmp) / "request.json", Path(tmp) / "result.json", Path(tmp) / "log"
        request_path.write_text(json.dumps(request, default=str))
        command = [sys.executable, "-m", WORKER, str(request_path), str(result_path)]
        with log_path.open("w") as log:
            # The worker is told whose child it is: a parent that dies before the worker's watch starts
            # (a start-up slowed by a loaded host) is then seen as gone, not taken for the parent.
            env = hostlock.child_env({PARENT_ENV: str(os.getpid())})  # beside builds: OpenMP sleeps at barriers
            with _live_lock:  # spawned and registered as one: a stop in between would miss the worker
                proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
                _live.add(proc)
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
            finally:
                with _live_lock:
                    _live.discard(proc)
            reader.join(timeout=5)
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-10:])
        if returncode < 0:
            message = killed_by_signal_message(returncode, f"The {what}", read_memory_limit())
            raise MeasurementError(f"{message} Last lines:\n{tail}")
        if returncode != 0 or not result_path.is_file():
            raise MeasurementError(f"The {what} failed (exit code {returncode}). Last lines:\n{tail}")
        return json.loads(result_path.read_text())


def stop_all_workers() -> int:
    """Kill every worker this process is waiting on (a flow stopped by SIGTERM; Ctrl-C reaches the
    workers by itself, through the terminal's process group); returns how many. Their run_worker
    calls then fail as killed, which fails their variants."""
    with _live_lock:
        running = [proc for proc in _live if proc.poll() is None]
    for proc in running:
        proc.kill()
    return len(running)


def exit_with_parent(poll_s: float = 0.5, *, parent: int | None = None) -> None:
    """Called inside a worker: exit at once when the process that started it is gone (SIGKILLed, or
    exited without stopping it). A measurement nobody waits for must not hold the cores, nor the
    host lock's next measurement wait on it. The parent is the pid run_worker passed, not the
    parent at the time of this call: by then a killed parent has already been replaced by init."""
    parent = parent or int(os.environ.get(PARENT_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


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


def peak_rss_bytes() -> int:
    """High-water resident memory of this process's own address space.

    Not ru_maxrss: Linux carries it over fork+exec, so a worker started by a 900 MB flow process
    would report at least 900 MB. VmHWM belongs to the address space exec created.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # other OSes: best available
