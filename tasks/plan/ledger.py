"""Memory promised to the steps that run side by side in this process, so that together they fit.

Builds run side by side (`builds.threads`) and beside the tokenizing and the reference pass. Each step's
guard compares its predicted peak with what this process may use *now*; two steps admitted a second
apart both saw the room of an idle host, and together they can pass it (on a 24 GiB host the 1.5B's
ONNX export, 13.5 GiB, beside its reference pass, 4.6 GiB, and a quantize). So a step admitted here holds
its predicted peak until its metered step ends, and the next step is admitted against what is free minus
what the running steps may still grow by (their promise less what they use now, read by their meters):

- it fits beside them: it starts;
- it would fit alone but not beside them: it waits until they end (the run takes longer, one step at a
  time, instead of being killed halfway), and says so on the run; a run told to stop (SIGTERM) while it
  waits does not start it (hostlock.RunStopping);
- it would not fit even alone: the guard's error, at once, as before.

A step whose enclosing step on the same thread already holds a promise (the importance matrix inside a
build) is checked against the room only, never made to wait: a thread that holds memory and waits for
another that holds memory could wait forever.

Other processes of this host (a second run, a worker, Dask's worker processes) post their promises on the
host's board (tasks.plan.board) and this ledger counts them the same way: a step here waits for a step
there, and the other way round.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

from tasks.hosts.hostlock import raise_if_stopping
from tasks.plan.board import Board
from tasks.plan import needs as N
from tasks.plan.learned import as_measured
from tasks.plan.limits import MemoryLimit, gib, read_memory_limit

RECHECK_S = 2.0  # how often a waiting step reads the room again (running steps' memory moves)
LOG = logging.getLogger(__name__)


@dataclass
class Promise:
    """The memory promised to one running step."""

    step: str
    need_bytes: int  # the predicted peak with the safety margin: what fits() compares
    thread: int | None  # None: a step of another process (posted on the host's board)
    in_use: Callable[[], int]  # what the step's processes use now (its meter's last sample)

    def outstanding(self) -> int:
        """What this step may still grow by: its promise less what it uses now."""
        return max(self.need_bytes - self.in_use(), 0)


class MemoryLedger:
    """The promises of the steps running in this process, and of other processes on `board` (None: this
    process's only)."""

    def __init__(self, board: Board | None = None) -> None:
        self._board = board
        self.forget_parent()

    def forget_parent(self) -> None:
        """Hold nothing, as a new process. A forked child inherits its parent's promises, but not the threads
        that would release them: it would wait for steps that never end there, and post as its parent."""
        self._cond = threading.Condition()  # a fresh lock: a thread of the parent may have held it at the fork
        self._promises: dict[str, Promise] = {}  # the metered step's token -> its promise
        if self._board is not None:
            self._board.forget_parent()

    def _others(self, me: int) -> list[Promise]:
        """The promises of other threads of this process and of other processes (as last posted)."""
        mine = [p for p in self._promises.values() if p.thread != me]
        posted = self._board.others() if self._board else []
        return mine + [Promise(p.label(), p.need_bytes, None, lambda used=p.in_use_bytes: used) for p in posted]

    def held(self) -> list[Promise]:
        with self._cond:
            return list(self._promises.values())

    def admit(self, needs: list[N.Need], read_limit: Callable[[], MemoryLimit], *, token: str | None,
              in_use: Callable[[], int] = lambda: 0, remedy: str = "",
              on_wait: Callable[[str], None] | None = None) -> N.Need:
        """The first of `needs` (strategies, best first) that fits beside the running steps, promised to
        the step `token` until `release(token)`; waits while one would fit alone but not beside them.
        Without a token (a core called outside a metered step) nothing is promised or awaited."""
        me = threading.get_ident()
        announced = False
        with self._cond:
            while True:
                with self._board.deciding() if self._board else nullcontext():
                    chosen, others, limit = self._decide(needs, read_limit, token, in_use, remedy, me)
                if others is None:
                    return chosen
                if not announced:
                    announced = True
                    message = (f"{chosen.step} waits for memory: it needs {gib(chosen.peak_bytes * N.SAFETY)}, "
                               f"this process may use {gib(limit.available_bytes)} now, and "
                               + ", ".join(f"{p.step} may still take {gib(p.outstanding())}" for p in others)
                               + "; it starts when they end (side by side they would not fit)")
                    (on_wait or LOG.warning)(message)
                self._cond.wait(RECHECK_S)
                raise_if_stopping(f"{chosen.step}, waiting for memory,")  # its neighbours are being stopped

    def _decide(self, needs: list[N.Need], read_limit: Callable[[], MemoryLimit], token: str | None,
                in_use: Callable[[], int], remedy: str, me: int) -> tuple[N.Need, list[Promise] | None, MemoryLimit]:
        """One look at the room: (the need admitted, None, limit), promised to `token`; or (the need that
        would fit alone, the promises it waits for, limit). Raises when nothing fits even alone."""
        limit = read_limit()
        others = self._others(me)
        # Alone: with the running steps ended, what they use now would be free again.
        alone = replace(limit, available_bytes=limit.available_bytes + sum(p.in_use() for p in others))
        chosen = N.choose(needs, alone, remedy=remedy)  # fits alone, or InsufficientMemoryError now
        room = limit.available_bytes - sum(p.outstanding() for p in others)
        beside = next((n for n in needs if n.peak_bytes * N.SAFETY <= room), None)
        holding = any(p.thread == me for p in self._promises.values())
        if beside is not None or token is None or holding or not others:
            chosen = beside or N.choose(needs, limit, remedy=remedy)
            if token is not None:
                need_bytes = int(chosen.peak_bytes * N.SAFETY)
                self._promises[token] = Promise(chosen.step, need_bytes, me, in_use)
                if self._board is not None:
                    self._board.post(token, chosen.step, need_bytes, in_use)
            return chosen, None, limit
        return chosen, others, limit

    def release(self, token: str) -> None:
        with self._cond:
            if self._promises.pop(token, None) is not None:
                if self._board is not None:
                    self._board.withdraw(token)
                self._cond.notify_all()


LEDGER = MemoryLedger(Board())  # one per process: every thread's steps, and the host's board
os.register_at_fork(after_in_child=LEDGER.forget_parent)  # a forked child is another process of the board


@dataclass(frozen=True)
class StepHolder:
    """The metered step a thread runs, as the ledger sees it (tasks.plan.records.metered sets it)."""

    token: str
    in_use: Callable[[], int]  # what its processes use now
    pause: Callable[[], None]  # it stops working while it waits for memory
    resume: Callable[[float], None]  # ... and resumes after so many seconds
    admitted: Callable[[int], None]  # the formula's peak of the strategy admitted (kept on its record)
    factor: Callable[[str], float] = lambda step: 1.0  # what this host's runs measured (tasks.plan.learned)


_threads = threading.local()  # per thread: the metered steps open on it, innermost last


def _holders() -> list[StepHolder]:
    if not hasattr(_threads, "holders"):
        _threads.holders = []
    return _threads.holders


@contextmanager
def holding(holder: StepHolder) -> Iterator[None]:
    """`holder` is this thread's current step; what is promised to it is released when it ends."""
    stack = _holders()
    stack.append(holder)
    try:
        yield
    finally:
        stack.pop()
        LEDGER.release(holder.token)


def admit(needs: list[N.Need], *, remedy: str = "", on_wait: Callable[[str], None] | None = None) -> N.Need:
    """The first of `needs` that fits beside the steps running in this process, promised to the step this
    thread is metering until it ends (outside a metered step: the room now, nothing promised). Each need
    is first scaled by what this host's runs measured for its step (tasks.plan.learned)."""
    stack = _holders()
    if not stack:
        return LEDGER.admit(needs, read_memory_limit, token=None, remedy=remedy, on_wait=on_wait)
    holder = stack[-1]
    measured = [as_measured(n, holder.factor(n.step)) for n in needs]
    waits: list[str] = []

    def said(message: str) -> None:
        waits.append(message)
        (on_wait or LOG.warning)(message)

    t0 = time.perf_counter()
    holder.pause()
    try:
        chosen = LEDGER.admit(measured, read_memory_limit, token=holder.token, in_use=holder.in_use,
                              remedy=remedy, on_wait=said)
    finally:
        # A wait is not the step's work; admitting at once (reading the host's board) is.
        holder.resume(time.perf_counter() - t0 if waits else 0.0)
    formula = needs[measured.index(chosen)]
    holder.admitted(formula.peak_bytes)  # the formula's, so a ratio learned from it never compounds
    return formula
