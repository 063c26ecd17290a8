"""Steps side by side are admitted against what the running ones may still take (tasks.plan.ledger): a
step that would fit alone but not beside them waits for them, one that would not fit even alone fails at
once, and the plan prices the builds phase's worst moment (tasks.plan.plan)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from tasks.plan.costs import CostModel
from tasks.plan.ledger import MemoryLedger
from tasks.plan.limits import MemoryLimit
from tasks.plan.needs import SAFETY, InsufficientMemoryError, Need
from tasks.plan.plan import plan_run
from tests.unit.test_plan_costs import QWEN15, _config

GiB = 2**30


class Host:
    """A host whose free memory is its size less what the admitted steps use now."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, {}

    def limit(self) -> MemoryLimit:
        free = self.size - sum(self.used.values())
        return MemoryLimit(available_bytes=free, host_available_bytes=free)


def need(step: str, gib: float) -> Need:
    return Need(step, "test", int(gib * GiB / SAFETY), 0)  # gib with the safety margin


@contextmanager
def held_elsewhere(ledger: MemoryLedger, host: Host, step: str, gib: float, token: str):
    """`step` admitted on another thread (steps side by side run on threads of their own), held inside."""
    held, finish = threading.Event(), threading.Event()

    def hold() -> None:
        ledger.admit([need(step, gib)], host.limit, token=token, in_use=lambda: host.used.get(token, 0))
        held.set()
        finish.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        yield
    finally:
        finish.set()
        thread.join()


def test_a_step_that_fits_alone_but_not_beside_a_running_one_waits_until_it_ends():
    host, ledger, said = Host(10 * GiB), MemoryLedger(), []
    ledger.admit([need("build onnx int4", 6)], host.limit, token="export", in_use=lambda: host.used.get("export", 0))
    host.used["export"] = 2 * GiB  # early in its work: it will grow to 6
    admitted = threading.Event()

    def reference() -> None:
        ledger.admit([need("reference pass", 5)], host.limit, token="reference", on_wait=said.append)
        admitted.set()

    thread = threading.Thread(target=reference)
    thread.start()
    # 8 GiB look free, but the export may still take 4 of them: 4 < 5, so the reference waits.
    assert not admitted.wait(0.5)
    assert len(said) == 1 and said[0].startswith("reference pass waits for memory")
    assert "build onnx int4 may still take 4.00 GiB" in said[0]
    del host.used["export"]
    ledger.release("export")
    assert admitted.wait(5)
    thread.join()
    assert [p.step for p in ledger.held()] == ["reference pass"]


def test_a_step_that_fits_beside_the_running_ones_starts_at_once():
    host, ledger = Host(10 * GiB), MemoryLedger()
    host.used["a"] = 3 * GiB  # at its peak: it takes nothing more
    with held_elsewhere(ledger, host, "build gguf Q8_0", 3, "a"):
        t0 = time.perf_counter()
        ledger.admit([need("reference pass", 6)], host.limit, token="b")
        assert time.perf_counter() - t0 < 0.5 and len(ledger.held()) == 2


def test_a_step_that_would_not_fit_even_alone_fails_at_once_naming_the_need():
    host, ledger = Host(10 * GiB), MemoryLedger()
    host.used["a"] = 3 * GiB
    with held_elsewhere(ledger, host, "build gguf Q8_0", 3, "a"):
        with pytest.raises(InsufficientMemoryError) as error:
            ledger.admit([need("build onnx int4", 12)], host.limit, token="b")
        assert "build onnx int4" in str(error.value) and "12.00 GiB" in str(error.value)
        assert [p.step for p in ledger.held()] == ["build gguf Q8_0"]  # nothing promised to the failed step


def test_the_first_strategy_that_fits_beside_the_others_is_taken_without_waiting():
    host, ledger = Host(10 * GiB), MemoryLedger()
    with held_elsewhere(ledger, host, "build onnx int4", 6, "a"):
        chosen = ledger.admit([need("acquire", 7), Need("acquire", "streaming", int(3 * GiB / SAFETY), 0)],
                              host.limit, token="b")
        assert chosen.strategy == "streaming"


def test_a_sub_step_of_a_step_holding_memory_is_never_made_to_wait():
    # The importance matrix inside a build: waiting while holding the build's promise could wait forever.
    host, ledger = Host(10 * GiB), MemoryLedger()
    with held_elsewhere(ledger, host, "reference pass", 5, "ref"):
        ledger.admit([need("build gguf Q4_K_M", 4)], host.limit, token="build")
        t0 = time.perf_counter()
        ledger.admit([need("imatrix", 4)], host.limit, token="imatrix")  # beside 9 GiB promised: no wait
        assert time.perf_counter() - t0 < 0.5


def test_a_metered_step_that_waited_records_the_wait_apart_from_its_work(monkeypatch):
    """Through the guard's path (tasks.plan.ledger.admit in a metered step): the wait is on the record,
    not in wall_s."""
    from tasks.plan import ledger, records

    host = Host(10 * GiB)
    monkeypatch.setattr(ledger, "read_memory_limit", host.limit)
    holding = threading.Event()
    done = threading.Event()

    def export() -> None:
        with records.metered("run-ledger", "build onnx int4") as note:
            note.n_weights = 10**9
            ledger.admit([need("build onnx int4", 8)])
            holding.set()
            time.sleep(0.6)
            done.set()  # its work is done; its promise is released as the step ends

    thread = threading.Thread(target=export)
    thread.start()
    assert holding.wait(5)
    with records.metered("run-ledger", "reference pass") as note:
        note.n_weights = 10**9
        ledger.admit([need("reference pass", 5)], on_wait=lambda message: None)
        assert done.is_set()  # it started only once the export had ended
        time.sleep(0.2)
    thread.join()
    by_step = {r.step: r for r in records.take_records("run-ledger")}
    reference = by_step["reference pass"]
    assert reference.memory_wait_s >= 0.3
    assert reference.wall_s == pytest.approx(0.2, abs=0.15)  # its work, not its wait
    assert by_step["build onnx int4"].memory_wait_s == 0.0
    assert ledger.LEDGER.held() == []  # every promise released with its step


def test_the_plan_prices_the_reference_pass_beside_the_largest_builds():
    config = _config(formats={"gguf": {"types": ["Q8_0", "Q4_K_M"], "serve": {"enabled": False}},
                              "onnx": {"precisions": ["int4"], "serve": {"enabled": False}}})
    roomy = plan_run(config, QWEN15, limit=MemoryLimit(40 * GiB, 40 * GiB), disk_free_bytes=100 * GiB,
                     cost=CostModel([], "hw"))
    rows = {r.step: r for r in roomy.rows}
    together = roomy.side_by_side
    assert together is not None and together.fits
    assert together.steps[0] == "reference pass" and "build onnx int4" in together.steps and len(together.steps) == 3
    assert together.peak_bytes == sum(rows[s].peak_bytes for s in together.steps)
    assert roomy.peak_bytes == together.peak_bytes > max(r.peak_bytes for r in roomy.rows)
    assert roomy.peak_note().startswith("peak = reference pass + ")

    # Room for the export alone, not beside the reference pass: the steps wait, the run still fits.
    tight = plan_run(config, QWEN15, limit=MemoryLimit(int(rows["build onnx int4"].peak_bytes * SAFETY) + GiB,
                                                       40 * GiB), disk_free_bytes=100 * GiB, cost=CostModel([], "hw"))
    assert not tight.side_by_side.fits and not tight.problems()
    assert tight.peak_bytes == max(r.peak_bytes for r in tight.rows)
    assert "they wait for memory and run one at a time" in tight.peak_note()


def test_one_build_slot_puts_one_build_beside_the_reference_pass():
    config = _config(builds={"threads": 1},
                     formats={"gguf": {"types": ["Q8_0", "Q4_K_M"], "serve": {"enabled": False}}})
    plan = plan_run(config, QWEN15, limit=MemoryLimit(40 * GiB, 40 * GiB), disk_free_bytes=100 * GiB,
                    cost=CostModel([], "hw"))
    assert plan.side_by_side.steps == ("reference pass", "build gguf Q8_0")
