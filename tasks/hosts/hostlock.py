"""One machine's cores: timed measurements alone, builds side by side.

A reader-writer lock on a file every slmforge process of this host (every flow, worker and Dask
worker started by this user) opens: a measurement holds it exclusively, a build holds it shared.
So two `slmforge run` at once, or a flow beside a worker, never time a variant while another
process quantizes or measures: a stored figure is never one taken on contended cores. `flock`
locks belong to the open file, so threads of one process exclude each other too, and the kernel
drops a lock when its process dies: a killed run cannot leave the host locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
        yield waited


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
        yield time.monotonic() - start
    finally:
        os.close(fd)  # closing the file releases the lock
