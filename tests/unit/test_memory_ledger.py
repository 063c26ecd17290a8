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


def test_a_step_waiting_for_memory_does_not_start_once_the_run_is_told_to_stop(monkeypatch):
    # SIGTERM stops the builds beside it: their memory is then free, and the waiting step must not take it.
    from tasks.hosts import hostlock

    monkeypatch.setattr(hostlock, "_stopping", threading.Event())
    host, ledger, outcome = Host(10 * GiB), MemoryLedger(), []

    def reference() -> None:
        try:
            ledger.admit([need("reference pass", 5)], host.limit, token="reference", on_wait=lambda m: None)
            outcome.append("started")
        except hostlock.RunStopping as exc:
            outcome.append(str(exc))

    with held_elsewhere(ledger, host, "build onnx int4", 8, "export"):
        waiting = threading.Thread(target=reference)
        waiting.start()
        time.sleep(0.3)
        hostlock.refuse_new_work()
        waiting.join(10)
    assert len(outcome) == 1 and outcome[0].startswith("this run is stopping (SIGTERM): reference pass, waiting")
    assert [p.step for p in ledger.held()] == ["build onnx int4"]  # nothing promised to the reference pass


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


def _onnx_record(hardware_id: str, *, predicted: int, measured: int, reused: bool = False):
    from tasks.plan.records import RunRecord, StepRecord

    return RunRecord(hardware_id=hardware_id, model="m", n_weights=10**9, steps=[StepRecord(
        step="build onnx int4", wall_s=60, peak_rss_bytes=measured, units=1.0, reused=reused,
        predicted_peak_bytes=predicted)])


def test_a_peak_this_host_measured_above_the_formula_is_learned_by_type_and_kind():
    from tasks.plan.learned import factor_for, memory_factors

    records = [_onnx_record("here", predicted=100, measured=122),  # the 1.5B's export on the AMX host
               _onnx_record("here", predicted=100, measured=90),  # below: never lowers a prediction
               _onnx_record("here", predicted=100, measured=200, reused=True),  # a reused step measured nothing
               _onnx_record("there", predicted=100, measured=300)]  # another host's CPU
    factors = memory_factors(records, "here")
    assert factors == {"build onnx int4": pytest.approx(1.22), "build onnx": pytest.approx(1.22)}  # 90: no lower
    assert factor_for(factors, "build onnx int8") == pytest.approx(1.22)  # its kind's, without records of its own
    assert factor_for(factors, "build gguf Q8_0") == 1.0
    # A type measured within its formula keeps its own 1, not its kind's factor (the 1.5B's f16 measure,
    # 0.97 of its prediction, had been scaled by ONNX int4's measure, 1.03).
    both = memory_factors([_onnx_record("here", predicted=100, measured=122), _onnx_record("here", predicted=100, measured=97)
                           .model_copy(update={"steps": [_onnx_record("here", predicted=100, measured=97).steps[0]
                                                         .model_copy(update={"step": "build onnx int8"})]})], "here")
    assert factor_for(both, "build onnx int8") == 1.0 and factor_for(both, "build onnx fp32") == pytest.approx(1.22)


def test_the_plan_scales_a_step_by_what_this_host_measured_and_says_so():
    config = _config(formats={"onnx": {"precisions": ["int4"], "serve": {"enabled": False}}})
    formula = plan_run(config, QWEN15, limit=MemoryLimit(40 * GiB, 40 * GiB), disk_free_bytes=100 * GiB,
                       cost=CostModel([], "hw"))
    learned = plan_run(config, QWEN15, limit=MemoryLimit(40 * GiB, 40 * GiB), disk_free_bytes=100 * GiB,
                       cost=CostModel([], "hw", memory_factors={"build onnx int4": 1.22}))
    before, after = ({r.step: r for r in p.rows}["build onnx int4"] for p in (formula, learned))
    assert after.peak_bytes == int(before.peak_bytes * 1.22)
    assert "x1.22: this host's runs measured it above the formula's" in after.note


def test_a_run_admits_a_step_at_the_peak_this_host_measured_and_records_the_formulas(tmp_path, monkeypatch):
    """A 16 GiB host: the export's formula (13.5 GiB) fits with its margin; the 16.5 this host measured
    does not. Before, the guard admitted it and the process would have been killed halfway."""
    from tasks.plan import ledger, records
    from tasks.plan.needs import onnx_export_need

    need_ = onnx_export_need(QWEN15, "int4", 4.0)
    records.save_run_record(tmp_path, _onnx_record("hw-here", predicted=need_.peak_bytes,
                                                   measured=int(need_.peak_bytes * 1.22)))
    host = Host(int(need_.peak_bytes * SAFETY * 1.1))  # room for the formula, not for what was measured
    monkeypatch.setattr(ledger, "read_memory_limit", host.limit)
    records.keep_run_record("run-learned", tmp_path, hardware_id="hw-here", model="m", n_weights=10**9)
    with pytest.raises(InsufficientMemoryError) as error:
        with records.metered("run-learned", "build onnx int4"):
            ledger.admit([need_])
    assert "this host's runs measured it above the formula" in str(error.value)

    host.size *= 2  # room for it: admitted, and its record keeps the formula's prediction (so a ratio
    with records.metered("run-learned", "build onnx int4") as note:  # learned from it never compounds)
        note.n_weights = 10**9
        ledger.admit([need_])
    kept = records.take_records("run-learned")
    assert kept[-1].predicted_peak_bytes == need_.peak_bytes
