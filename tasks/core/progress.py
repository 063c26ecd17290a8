"""Progress of long measurements: Prefect progress artifacts in the UI, a log line every few
seconds, and a bar on the terminal when there is one. Only display: never fails a measurement."""

from __future__ import annotations

import contextvars
import sys
import time

from tqdm import tqdm

LOG_EVERY_S = 10.0


class StepProgress:
    """A callback `(what, done, total)` for `run_worker`, bound to one variant's task run."""

    def __init__(self, label: str) -> None:
        from prefect import get_run_logger  # Prefect: heavy, only inside a flow run or a worker command

        self.label, self.logger = label, get_run_logger()
        self.artifact_id = None
        self.last_log = 0.0
        self.bar = None
        # Called from the worker's output reader thread: run in the task run's own context, where
        # Prefect knows which run the artifact and the log line belong to.
        self.context = contextvars.copy_context()

    def __call__(self, what: str, done: int, total: int) -> None:
        self.context.run(self._update, what, done, total)

    def _update(self, what: str, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        self._artifact(fraction, f"{self.label}: {what} {done}/{total}")
        now = time.monotonic()
        if done == total or now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            self.logger.info("%s: %s %d/%d", self.label, what, done, total)
        self._bar(what, done, total)

    def _artifact(self, fraction: float, description: str) -> None:
        # Prefect: heavy, only inside a flow run or a worker command
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=0.0, description=description)
        update_progress_artifact(self.artifact_id, progress=round(100 * fraction, 1), description=description)

    def _bar(self, what: str, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return

        if self.bar is None or self.bar.desc != f"{self.label} {what}":
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=f"{self.label} {what}", leave=False, file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()
        if done == total:
            self.bar.close()
            self.bar = None
