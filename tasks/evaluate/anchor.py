"""The speed anchor: the f16 base, in a process of its own, timed beside each of a variant's bursts.

These hosts drift: one file decoded at 131, 108, 135 and 104 tok/s in four runs within 70 minutes,
each time with a burst sd of a few tok/s. A memory read pass beside each burst does not follow that
drift (correlation with decode -0.18 to +0.20); a second model's decode burst does (+0.73 to +0.83;
tests/benchmarks/drift_anchor.py). So every timed burst of a variant is paired with the same burst of
the run's f16 base, in ABBA order (variant first on even repetitions, the anchor first on odd ones, so
a steady trend weighs on both alike), and the variant's figure per anchor is what speed verdicts judge.

The anchor runs in its own process: the variant's peak memory stays its own (VmHWM is per address
space), and a crash there fails the measurement, not the flow. It always uses the host's physical
cores, whatever the variant's `threads`: a variant slowed by its own settings must move its ratio.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from pathlib import Path

from pydantic import BaseModel

from tasks.core.errors import MeasurementError
from tasks.evaluate.process import exit_with_parent


class AnchorRequest(BaseModel):
    """What the anchor process loads and the protocol its bursts follow (the variant's own)."""

    runtime: str
    model: Path
    n_ctx: int
    threads: int
    n_gpu_layers: int = 0
    prefill_tokens: int
    decode_tokens: int
    depths: list[int]
    ttft_prompt: list[int]


class SpeedAnchor:
    """`with SpeedAnchor(request) as anchor: anchor.burst("decode_tps")` -> one timed figure."""

    def __init__(self, request: AnchorRequest, *, start_timeout_s: float = 600.0) -> None:
        self.request, self.start_timeout_s = request, start_timeout_s
        self.name = Path(request.model).name

    def __enter__(self) -> SpeedAnchor:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited model or threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self.request.model_dump(mode="json"), os.getpid()),
                                        name="slmforge-speed-anchor", daemon=True)
        self._process.start()
        child.close()
        self._answer("load", self.start_timeout_s)
        return self

    def burst(self, figure: str, timeout_s: float = 600.0) -> float:
        self._conn.send(figure)
        return self._answer(figure, timeout_s)

    def _answer(self, what: str, timeout_s: float) -> float:
        if not self._conn.poll(timeout_s):
            raise MeasurementError(f"The speed anchor ({self.name}) gave no answer to {what!r} in {timeout_s:g} s.")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise MeasurementError(f"The speed anchor ({self.name}) died during {what!r} "
                                   f"(exit code {self._process.exitcode}).") from None
        if kind == "error":
            raise MeasurementError(f"The speed anchor ({self.name}) failed during {what!r}: {value}")
        return float(value)

    def __exit__(self, *exc) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


def _serve(conn, request: dict, parent: int) -> None:
    """In the anchor process: load the base, then answer one burst per figure name until told to stop."""
    exit_with_parent(parent=parent)  # the measurement worker that started it, not the flow
    from tasks.evaluate.speed import speed_runs  # here, not at import: the spawned child imports this module

    try:
        req = AnchorRequest.model_validate(request)
        runtime = importlib.import_module(req.runtime)
        model = runtime.load(req.model, n_ctx=req.n_ctx, threads=req.threads, n_gpu_layers=req.n_gpu_layers)
        runs = speed_runs(model, prefill_tokens=req.prefill_tokens, decode_tokens=req.decode_tokens,
                          depths=req.depths, ttft_prompt=req.ttft_prompt, seed=4321)
        conn.send(("ok", 0.0))
        while (figure := conn.recv()) is not None:
            conn.send(("ok", runs[figure]()))
    except EOFError:
        return
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which fails the measurement with it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
