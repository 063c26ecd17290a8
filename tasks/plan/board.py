"""Memory promised to steps of the other slmforge processes of this host: a folder every process reads.

The ledger (tasks.plan.ledger) sees the threads of one process. But two `slmforge run` at once, a flow
beside a worker, or builds fanned out to Dask's worker processes all share one host: each process's
steps admitted on what is free now, a second apart, can together pass it (two runs of the 1.5B each
exporting ONNX int4, 16.5 GiB apiece on a 24 GiB host). So every promise is also posted here, beside the
host's cores lock (tasks.hosts.hostlock: the same processes share it), and each process admits its
steps against the others' promises too.

- One small JSON file per promise, written to a temporary name then renamed: the step, its promise, the
  process (pid and start time) and what the step uses now. Its process refreshes what it uses every
  `REFRESH_S`; a reader takes the last figure. A step's memory grows as it works, so a stale figure is
  low and what it may still take is overstated: a reader waits a little more, never less.
- A promise whose process is gone (killed, pid reused) is not counted, and its file is removed: a run
  that died cannot hold the host's memory.
- A decision (read the promises, then post one) is taken under an exclusive `flock` on `board.lock`, so
  two processes cannot both take the same room. Waiting is polling (the ledger's RECHECK_S): a process
  cannot wake another's condition.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tasks.hosts.hostlock import lock_path

REFRESH_S = 1.0  # how often a process posts what its steps use now


def board_dir() -> Path:
    """The host's board: beside the cores lock, shared by the same processes."""
    return lock_path().parent / "memory"


@dataclass(frozen=True)
class Posted:
    """A promise of another process, as last posted."""

    step: str
    need_bytes: int
    in_use_bytes: int
    pid: int

    def label(self) -> str:
        return f"{self.step} (process {self.pid})"


def _started(pid: int) -> float | None:
    """The process's start time (tells a reused pid apart); None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):  # gone, a zombie, or no pid at all (a damaged file)
        return None


class Board:
    """This process's view of the host's board in `root` (see the module docstring)."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self.forget_parent()

    def forget_parent(self) -> None:
        """Start as this process, holding nothing: also what a forked child must do, or it would post under
        its parent's pid and skip its parent's promises as its own (see tasks.plan.ledger's at-fork hook)."""
        self._pid = os.getpid()
        self._started = _started(self._pid)
        self._mine: dict[str, tuple[str, int, Callable[[], int]]] = {}  # token -> step, need, in_use
        self._lock = threading.Lock()  # a fresh one: the parent's may have been held by a thread at the fork
        self._refresher: threading.Thread | None = None

    @property
    def root(self) -> Path:
        return self._root or board_dir()

    @contextmanager
    def deciding(self) -> Iterator[None]:
        """Hold the board alone while reading the promises and posting one."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "board.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the file releases the lock

    def others(self) -> list[Posted]:
        """The promises of the other live processes of this host; those of dead processes are removed."""
        found = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # removed as we read it (its step ended)
            if not isinstance(entry, dict):
                continue
            if entry.get("pid") == self._pid and entry.get("started") == self._started:
                continue  # this process's own: the ledger knows them better
            if _started(entry.get("pid", -1)) != entry.get("started"):
                path.unlink(missing_ok=True)  # its process died: nothing holds that memory now
                continue
            try:
                found.append(Posted(entry["step"], int(entry["need_bytes"]), int(entry["in_use_bytes"]), entry["pid"]))
            except (KeyError, TypeError, ValueError):
                path.unlink(missing_ok=True)  # not a promise this code wrote
        return found

    def post(self, token: str, step: str, need_bytes: int, in_use: Callable[[], int]) -> None:
        with self._lock:
            self._mine[token] = (step, need_bytes, in_use)
            self._write(token)
            if self._refresher is None or not self._refresher.is_alive():
                self._refresher = threading.Thread(target=self._refresh, daemon=True, name="memory-board")
                self._refresher.start()

    def withdraw(self, token: str) -> None:
        with self._lock:
            if self._mine.pop(token, None) is not None:
                self._path(token).unlink(missing_ok=True)

    def _path(self, token: str) -> Path:
        return self.root / f"{self._pid}-{token}.json"

    def _write(self, token: str) -> None:
        step, need_bytes, in_use = self._mine[token]
        entry = {"step": step, "need_bytes": need_bytes, "in_use_bytes": int(in_use()), "pid": self._pid,
                 "started": self._started}
        path = self._path(token)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)

    def _refresh(self) -> None:
        """Post what each of this process's steps uses now, until none is left."""
        while True:
            time.sleep(REFRESH_S)
            with self._lock:
                if not self._mine:
                    self._refresher = None
                    return
                for token in list(self._mine):
                    try:
                        self._write(token)
                    except OSError:
                        pass  # the board's folder went away (a test's tmp): the next post makes it again
