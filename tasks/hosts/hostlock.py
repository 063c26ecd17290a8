"""One machine's cores: timed measurements alone, builds side by side.

A reader-writer lock on a file every slmforge process of this host (every flow, worker and Dask
worker started by this user) opens: a measurement holds it exclusively, a build holds it shared.
So two `slmforge run` at once, or a flow beside a worker, never time a variant while another
process quantizes or measures: a stored figure is never one taken on contended cores. `flock`
locks belong to the open file, so threads of one process exclude each other too, and the kernel
drops a lock when its process dies: a killed run cannot leave the host locked.

Builds side by side share the cores, and so must their children's threads: llama.cpp (built with
OpenMP) and torch wait at every barrier by spinning, so two 2-thread processes on 2 cores spend
much of their time spinning on cores the other needs. Measured on this project's 2-core hosts
(SmolLM2-135M, the reference pass beside llama-imatrix): 122 s and 133 s spinning, 56 s and 64 s
with OpenMP told to sleep while it waits (alone: 35 s and 39 s; the same figures and the same
imatrix, byte for byte). So every process started while a thread holds the cores shared gets
`child_env()`'s OMP_WAIT_POLICY=PASSIVE; a timed measurement (exclusive) keeps the user's own
environment, as llama-bench would run.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


# What a process started beside other builds is given (see the module's docstring).
BESIDE_OTHERS_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# The metered step a child process works for (tasks.plan.records): steps run side by side, and each
# counts the memory of its own processes only.
STEP_ENV = "SLMFORGE_STEP"
_holding = threading.local()  # per thread: Prefect runs each task in a thread of its own


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process started by this thread: this process's own, plus
    BESIDE_OTHERS_ENV while this thread holds the cores shared, plus the step it works for (STEP_ENV),
    plus `extra`."""
    env = dict(os.environ)
    if getattr(_holding, "shared", 0):
        env.update(BESIDE_OTHERS_ENV)
    if step := getattr(_holding, "step", None):
        env[STEP_ENV] = step
    return env | (extra or {})


@contextmanager
def working_for(step: str) -> Iterator[None]:
    """Children this thread starts inside carry `step` in STEP_ENV (child_env)."""
    previous = getattr(_holding, "step", None)
    _holding.step = step
    try:
        yield
    finally:
        _holding.step = previous


class RunStopping(RuntimeError):
    """The run was told to stop: a step that would take the cores now does not start."""


_stopping = threading.Event()


def refuse_new_work() -> None:
    """Once a run is told to stop (SIGTERM), no thread of this process takes the cores again: a step
    queued behind the one being stopped, or waiting for the lock, raises RunStopping instead of
    starting a build or a measurement that nobody will wait for."""
    _stopping.set()


def raise_if_stopping(what: str) -> None:
    """RunStopping when this run was told to stop: for a step about to start work after a wait of its own
    (for memory, tasks.plan.ledger), which would otherwise start it once its neighbours were killed."""
    if _stopping.is_set():
        raise RunStopping(f"this run is stopping (SIGTERM): {what} does not start")


def lock_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "slmforge" / "locks" / "host-cores.lock"


@contextmanager
def exclusive(on_wait=None) -> Iterator[float]:
    """Hold the host's cores alone (timed measurements); yields the seconds spent waiting."""
    with _locked(fcntl.LOCK_EX, on_wait) as waited:
        yield waited


@contextmanager
def shared(on_wait=None) -> Iterator[float]:
    """Share the host's cores with other builds, not with a measurement; yields the seconds waited."""
    with _locked(fcntl.LOCK_SH, on_wait) as waited:
        _holding.shared = getattr(_holding, "shared", 0) + 1
        try:
            yield waited
        finally:
            _holding.shared -= 1


@contextmanager
def _locked(mode: int, on_wait) -> Iterator[float]:
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()  # say why nothing moves, then wait
            fcntl.flock(fd, mode)
        if _stopping.is_set():
            raise RunStopping("this run is stopping (SIGTERM): no new step takes the cores")
        try:
            yield time.monotonic() - start
        except Exception as exc:
            # The stop killed this step's processes: what the tool said as it died (no output, exit code
            # 0, "check the versions") would send a user after a fault that is not there.
            if _stopping.is_set() and not isinstance(exc, RunStopping):
                raise RunStopping(f"this run is stopping (SIGTERM): the step was stopped in the middle "
                                  f"({type(exc).__name__} as its processes were stopped); nothing of it is "
                                  "stored, and a new run redoes it") from exc
            raise
    finally:
        os.close(fd)  # closing the file releases the lock
