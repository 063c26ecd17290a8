"""The cost model (rates learned from recorded runs) and the whole-run plan built from a config."""

from __future__ import annotations

import pytest

from tasks.plan.costs import DEFAULT_COSTS, CostModel, kind_of, step_units
from tasks.plan.limits import MemoryLimit
from tasks.plan.plan import plan_run
from tasks.plan.records import RunRecord, StepRecord, load_run_records, save_run_record
from tasks.plan.shapes import ModelShape

GiB = 2**30
QWEN15 = ModelShape(name="qwen1.5b", architecture="qwen2", n_weights=1_777_088_000, n_layers=28, hidden=1536,
                    vocab=151_936, n_kv_heads=2, head_dim=128, source_bytes=1_117_320_768, source_quantized=True)


def record(hardware_id: str, *steps: tuple[str, float, float, bool]) -> RunRecord:
    return RunRecord(hardware_id=hardware_id, model="m", n_weights=10**9, steps=[
        StepRecord(step=name, wall_s=wall, peak_rss_bytes=1, units=units, reused=reused)
        for name, wall, units, reused in steps])


def test_step_kinds_and_units():
    assert kind_of("build gguf Q4_K_M") == "build gguf" and kind_of("measure x-gguf-Q8_0") == "measure"
    assert step_units("reference pass", 2 * 10**9, chunks=4) == pytest.approx(8.0)
    assert step_units("acquire", 2 * 10**9, chunks=4) == pytest.approx(2.0)  # chunks do not matter there


def test_without_records_the_built_in_defaults_are_used():
    model = CostModel([], "hw-a")
    assert model.rate("acquire").basis == "built-in default"
    assert model.seconds("acquire", 2.0) == pytest.approx(DEFAULT_COSTS["acquire"][0] + 2 * DEFAULT_COSTS["acquire"][1])


def test_this_hosts_records_win_over_other_hosts_and_reused_steps_are_ignored():
    records = [
        record("hw-a", ("acquire", 30.0, 1.0, False), ("acquire", 90.0, 3.0, False), ("acquire", 0.1, 1.0, True)),
        record("hw-b", ("acquire", 500.0, 1.0, False), ("convert", 40.0, 2.0, False)),
    ]
    model = CostModel(records, "hw-a")
    assert model.rate("acquire").seconds_per_unit == pytest.approx(120 / 4)  # ratio of sums, reused left out
    assert model.rate("acquire").basis == "this host (2 steps)"
    assert model.seconds("convert", 2.0) == pytest.approx(40.0)  # only another host measured it
    assert model.rate("convert").basis.startswith("other hosts")


def test_records_round_trip_through_the_store_and_bad_files_are_skipped(tmp_path):
    save_run_record(tmp_path, record("hw-a", ("convert", 12.0, 1.0, False)))
    (tmp_path / "plan" / "runs" / "broken.json").write_text("{not json")
    loaded = load_run_records(tmp_path)
    assert len(loaded) == 1 and loaded[0].steps[0].wall_s == 12.0


def _config(**overrides):
    from tasks.config import PipelineConfig

    data = {"name": "t", "model_name": "T", "source": {"kind": "gguf", "path": "/x.gguf"},
            "formats": {"gguf": {"types": ["Q4_K_M"], "serve": {"enabled": False}}},
            "evaluate": {"max_chunks": 2, "n_ctx": 512}}
    data.update(overrides)
    return PipelineConfig.model_validate(data)


def test_plan_of_the_15b_on_a_roomy_host_fits_and_prices_every_step():
    config = _config()
    plan = plan_run(config, QWEN15, limit=MemoryLimit(20 * GiB, 20 * GiB), disk_free_bytes=100 * GiB,
                    cost=CostModel([], "hw"))
    steps = [row.step for row in plan.rows]
    assert steps == ["acquire", "convert", "build gguf Q4_K_M", "reference pass", "measure gguf F16",
                     "measure gguf Q4_K_M"]
    assert plan.rows[0].strategy == "transformers-bfloat16" and not plan.problems()
    assert plan.total_seconds == pytest.approx(sum(r.seconds for r in plan.rows)) and plan.total_seconds > 0


def test_plan_under_a_small_cap_takes_streaming_and_says_why():
    plan = plan_run(_config(), QWEN15, limit=MemoryLimit(6 * GiB, 20 * GiB), disk_free_bytes=100 * GiB,
                    cost=CostModel([], "hw"))
    acquire = plan.rows[0]
    assert acquire.strategy == "streaming-bfloat16" and acquire.fits
    assert "instead of transformers-bfloat16" in acquire.note


def test_plan_names_the_steps_that_cannot_fit_and_the_disk():
    plan = plan_run(_config(), QWEN15, limit=MemoryLimit(GiB // 2, 20 * GiB), disk_free_bytes=GiB,
                    cost=CostModel([], "hw"))
    problems = plan.problems()
    assert any(p.startswith("acquire: needs") for p in problems)
    assert any(p.startswith("reference pass: needs") for p in problems)
    assert problems[-1].startswith("disk: the run writes about")


def test_a_sub_step_is_recorded_apart_and_out_of_its_enclosing_steps_time():
    """The importance matrix runs inside the first build that needs it: it is recorded as `imatrix`,
    and the build's record is the build's own time, so neither prices the other."""
    import time

    from tasks.plan.records import metered, metered_within, take_records

    with metered_within("imatrix") as outside:  # no enclosing step: nothing is recorded
        outside.n_weights = 10**9
    with metered("run-a", "build gguf Q4_K_M-imat") as build:
        build.n_weights = 10**9
        time.sleep(0.05)
        with metered_within("imatrix") as inner:
            inner.n_weights, inner.chunks = 10**9, 32
            time.sleep(0.3)
    records = {r.step: r for r in take_records("run-a")}
    assert set(records) == {"build gguf Q4_K_M-imat", "imatrix"}
    assert records["imatrix"].wall_s >= 0.3 and records["imatrix"].units == 32.0
    assert 0.05 <= records["build gguf Q4_K_M-imat"].wall_s < 0.3
    assert take_records("run-a") == []


def test_steps_side_by_side_split_the_time_they_share_and_the_shares_add_up():
    """Two builds beside each other for their whole length each take half the host: their records say
    so (share_s), whatever each one's wall time, and the shares of a run add up to its wall time."""
    import threading
    import time

    from tasks.plan.records import metered, take_records

    started = threading.Barrier(2)

    def build(name: str, seconds: float) -> None:
        with metered("run-shares", name) as note:
            note.n_weights = 10**9
            started.wait()
            time.sleep(seconds)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=build, args=(f"build gguf {q}", 0.4)) for q in ("Q8_0", "Q4_0")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with metered("run-shares", "measure x-Q8_0") as note:  # alone: its share is its wall time
        note.n_weights = 10**9
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    records = {r.step: r for r in take_records("run-shares")}
    for name in ("build gguf Q8_0", "build gguf Q4_0"):
        assert records[name].wall_s >= 0.4
        assert records[name].share_s == pytest.approx(records[name].wall_s / 2, abs=0.05)
    assert records["measure x-Q8_0"].share_s == pytest.approx(records["measure x-Q8_0"].wall_s, abs=0.05)
    assert sum(r.share_s for r in records.values()) == pytest.approx(wall, abs=0.05)


def test_a_sub_step_pauses_its_enclosing_steps_share():
    import time

    from tasks.plan.records import metered, metered_within, take_records

    with metered("run-nested", "build gguf Q4_K_M-imat") as build:
        build.n_weights = 10**9
        time.sleep(0.1)
        with metered_within("imatrix") as inner:
            inner.n_weights = 10**9
            time.sleep(0.3)
    records = {r.step: r for r in take_records("run-nested")}
    assert records["imatrix"].share_s == pytest.approx(records["imatrix"].wall_s, abs=0.05)
    assert records["build gguf Q4_K_M-imat"].share_s == pytest.approx(records["build gguf Q4_K_M-imat"].wall_s,
                                                                       abs=0.05)
    assert records["build gguf Q4_K_M-imat"].share_s < 0.3


def test_a_fixed_cost_is_learned_where_sizes_differ_so_a_micro_model_does_not_overprice_a_large_one():
    from tasks.plan.costs import fit_fixed_and_rate

    # 12 s of start-up plus 50 s per billion weights, seen at 0.135B and 0.27B.
    points = [(0.135, 12 + 50 * 0.135), (0.135, 12 + 50 * 0.135 + 0.5), (0.27, 12 + 50 * 0.27)]
    fixed, per_unit = fit_fixed_and_rate(points)
    assert fixed == pytest.approx(12, abs=1.5) and per_unit == pytest.approx(50, rel=0.1)
    records = [record("hw-a", *[("convert", s, u, False) for u, s in points])]
    predicted = CostModel(records, "hw-a").seconds("convert", 1.78)
    assert predicted == pytest.approx(12 + 50 * 1.78, rel=0.1)  # through the origin it would be ~190 s
    # One size only: nothing tells a fixed cost from a rate, so the ratio of sums stands.
    assert fit_fixed_and_rate([(0.135, 20.0), (0.135, 22.0)]) == (0.0, pytest.approx(42 / 0.27))
    # A line that would need a negative fixed cost is not trusted either.
    assert fit_fixed_and_rate([(0.1, 1.0), (1.0, 100.0)])[0] == 0.0


def test_records_written_before_shares_are_priced_by_their_wall_time():
    old = record("hw-a", ("serve m-gguf-q8_0", 30.0, 1.0, False))
    assert old.steps[0].share_s is None
    assert CostModel([old], "hw-a").step_seconds("serve gguf Q8_0", 10**9) == pytest.approx(30.0)


def test_each_type_is_priced_by_its_own_records_with_its_kinds_fixed_cost():
    """A K-quant builds several times slower than a Q8_0: one rate for every build would miss both.
    Q8_0 was built at two sizes (fixed 5 s + 10 s per billion), Q4_K_M only on the micro model."""
    from tasks.plan.costs import step_key

    runs = [RunRecord(hardware_id="hw", model=name, n_weights=n, steps=[
        StepRecord(step="build gguf Q8_0", wall_s=5 + 10 * n / 1e9, peak_rss_bytes=1, units=n / 1e9),
        *([StepRecord(step="build gguf Q4_K_M", wall_s=5 + 40 * n / 1e9, peak_rss_bytes=1, units=n / 1e9)]
          if n < 10**9 else []),
        StepRecord(step="measure m-gguf-f16", wall_s=2 + 3 * 4 * n / 1e9, peak_rss_bytes=1, units=n / 1e9 * 6),
    ]) for name, n in (("micro", 135_000_000), ("small", 1_780_000_000))]
    model = CostModel(runs, "hw")
    assert model.seconds("build gguf Q4_K_M", 1.78) == pytest.approx(5 + 40 * 1.78, rel=0.01)
    assert model.seconds("build gguf Q8_0", 1.78) == pytest.approx(5 + 10 * 1.78, rel=0.01)
    assert model.seconds("build gguf Q4_0", 1.78) < model.seconds("build gguf Q4_K_M", 1.78)  # the kind's line
    # The f16 measures speed only: its units do not grow with the chunks scored (recomputed for old records).
    assert step_units("measure gguf F16", 10**9, chunks=8) == step_units("measure gguf F16", 10**9, chunks=1) == 4.0
    assert model.step_seconds("measure gguf F16", 1_780_000_000) == pytest.approx(2 + 3 * 4 * 1.78, rel=0.01)
    assert step_key("measure qwen2.5-coder-1.5b-instruct-gguf-q4_k_m-imat") == step_key("measure gguf Q4_K_M-imat")
    assert step_key("serve smollm2-135m-instruct-onnx-int4") == "serve onnx int4"


def test_measure_and_serve_are_priced_by_the_bytes_they_read_and_the_quality_pass_by_its_chunks():
    """A served Q4 reads half a Q8's bytes per token; a measure's quality pass is the reference pass's
    work over its chunks (learned from the reference pass), its speed tests the model's bytes."""
    def run(n: int, chunks: int) -> RunRecord:
        gb = {q: n * bpw / 8 / 1e9 for q, bpw in (("q8_0", 8.5), ("f16", 16.0))}
        return RunRecord(hardware_id="hw", model="m", n_weights=n, steps=[
            StepRecord(step="reference pass", wall_s=1 + 5 * n / 1e9 * chunks, share_s=1 + 5 * n / 1e9 * chunks,
                       peak_rss_bytes=1, units=n / 1e9 * chunks),
            StepRecord(step="measure m-gguf-q8_0", wall_s=0, share_s=3 + 20 * gb["q8_0"] + 5 * n / 1e9 * chunks,
                       peak_rss_bytes=1, units=n / 1e9 * (chunks + 4)),
            StepRecord(step="serve m-gguf-q8_0", wall_s=0, share_s=4 + 10 * gb["q8_0"], peak_rss_bytes=1, units=n / 1e9),
            StepRecord(step="serve m-gguf-f16", wall_s=0, share_s=4 + 10 * gb["f16"], peak_rss_bytes=1, units=n / 1e9),
        ])

    model = CostModel([run(135_000_000, 2), run(1_780_000_000, 2)], "hw")
    n = 1_780_000_000
    # Eight chunks where the records had two: only the quality pass grows.
    assert model.step_seconds("measure gguf Q8_0", n, chunks=8) == pytest.approx(
        3 + 20 * n * 8.5 / 8e9 + 5 * 1.78 * 8, rel=0.02)
    # A type never served: the kind's line on its bytes (Q4_0: 4.55 bits per weight).
    assert model.step_seconds("serve gguf Q4_0", n) == pytest.approx(4 + 10 * n * 4.55 / 8e9, rel=0.02)


def test_a_kind_seen_at_one_size_keeps_the_built_in_lines_shape(monkeypatch):
    # A 135M run's acquire is mostly its fixed cost; a rate through the origin would price a 10x larger
    # model's acquire at 10x the time. The built-in line (20 s + 10 s per unit) is scaled through the record.
    monkeypatch.setitem(DEFAULT_COSTS, "acquire", (20.0, 10.0))
    model = CostModel([record("hw-a", ("acquire", 60.0, 1.0, False))], "hw-a")
    rate = model.rate("acquire")
    assert (rate.fixed_seconds, rate.seconds_per_unit) == (pytest.approx(40.0), pytest.approx(20.0))
    assert model.seconds("acquire", 1.0) == pytest.approx(60.0)  # through the record
    assert model.seconds("acquire", 10.0) == pytest.approx(240.0)  # not 600
    assert rate.basis == "this host (1 steps), shaped like the built-in line"
    # Sizes 2x apart: the records' own line, the built-in one forgotten.
    spanned = CostModel([record("hw-a", ("acquire", 60.0, 1.0, False), ("acquire", 150.0, 4.0, False))], "hw-a")
    assert spanned.rate("acquire").fixed_seconds == pytest.approx(30.0)
    assert spanned.rate("acquire").seconds_per_unit == pytest.approx(30.0)


def test_the_cost_model_counts_every_chunk_the_reference_scored(tmp_path):
    # The 1.5B's run recorded 8 chunks (its main text's) for a reference pass that scored 32 (three
    # domains of 8 beside them): the plan, which prices all 32, then read a 4x rate and predicted 4x.
    from tasks.evaluate.measure import Reference

    figures = {"chunks": 8, "domains": {"code": {"chunks": 8}, "chat": {"chunks": 8}, "non_english": {"chunks": 8}}}
    assert Reference(folder=tmp_path, key="k", reused=False, figures=figures).chunks_scored == 32
    assert Reference(folder=tmp_path, key="k", reused=False, figures={"chunks": 24}).chunks_scored == 24
    # The run's log said "8 chunks" beside the 2,479.7 MB that all 32 had stored.
    logged = Reference(folder=tmp_path, key="k", reused=False,
                       figures={**figures, "stored_bytes": 2_479_685_280, "bytes_per_scored_token": 303_883}).describe()
    assert logged == "computed: 32 chunks (the main text's 8), 2479.7 MB stored (303883 bytes per scored token)"


def test_humaneval_is_planned_per_variant_and_priced_per_problem_and_model_byte():
    config = _config(evaluate={"max_chunks": 2, "n_ctx": 512, "humaneval": {"problems": {"count": 10}}})
    plan = plan_run(config, QWEN15, limit=MemoryLimit(20 * GiB, 20 * GiB), disk_free_bytes=100 * GiB,
                    cost=CostModel([], "hw"))
    rows = {row.step: row for row in plan.rows}
    assert {"humaneval gguf F16", "humaneval gguf Q4_K_M"} <= set(rows)
    # A Q4_K_M decodes a third of an f16's bytes per token: its problems take about a third of the time.
    assert rows["humaneval gguf Q4_K_M"].seconds == pytest.approx(rows["humaneval gguf F16"].seconds * 4.85 / 16)
    assert rows["humaneval gguf F16"].seconds == pytest.approx(CostModel([], "hw").step_seconds(
        "humaneval gguf F16", QWEN15.n_weights, chunks=10))
    # A recorded run's HumanEval (learned on its own, not inside the measure's time) prices the next one.
    learned = CostModel([RunRecord(hardware_id="hw", model="m", n_weights=QWEN15.n_weights, steps=[StepRecord(
        step="humaneval gguf F16", wall_s=1640.0, share_s=1640.0, peak_rss_bytes=1, units=1.777088 * 164)])], "hw")
    assert learned.step_seconds("humaneval gguf F16", QWEN15.n_weights, chunks=164) == pytest.approx(1640.0)


def test_a_kept_run_record_is_on_disk_as_each_step_finishes(tmp_path):
    """The record was written at the run's end only: a run stopped after hours left the cost model
    nothing. Kept, it holds every finished step at once (those before it was kept too), and a step that
    failed halfway is not in it."""
    from tasks.plan.records import keep_run_record, load_run_records, metered, take_records

    with metered("run-kept", "acquire") as note:  # before the model is known: kept once it is
        note.n_weights = 10**9
    path = keep_run_record("run-kept", tmp_path, hardware_id="hw-a", model="some/model", n_weights=10**9)
    assert [s.step for s in load_run_records(tmp_path)[0].steps] == ["acquire"]
    with metered("run-kept", "convert") as note:
        note.n_weights = 10**9
    with pytest.raises(KeyboardInterrupt), metered("run-kept", "build gguf Q8_0") as note:
        note.n_weights = 10**9
        raise KeyboardInterrupt  # stopped in the middle: not a measure of the step
    (record,) = load_run_records(tmp_path)  # one file, rewritten in place
    assert [s.step for s in record.steps] == ["acquire", "convert"]
    assert (record.hardware_id, record.model, record.n_weights) == ("hw-a", "some/model", 10**9)
    assert [s.step for s in take_records("run-kept")] == ["acquire", "convert"]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def _probe(prefill_tps: float, decode_tps: float):
    from tasks.plan.probe import HostProbe

    return HostProbe(prefill_tps=prefill_tps, decode_tps=decode_tps, threads=2, llama_cpp="0.3.36")


def test_a_slower_hosts_probe_scales_the_built_in_lines_of_the_steps_that_run_a_model():
    """On a host whose probe runs half as fast as the built-in lines' host, every forward pass is priced
    twice as long (prefill for the passes over text, decode for generation); acquire, convert and the
    builds run no model and keep their lines."""
    from tasks.plan.costs import BUILT_IN_PROBE

    plain = CostModel([], "hw")
    slow = CostModel([], "hw", _probe(BUILT_IN_PROBE["prefill_tps"] / 2, BUILT_IN_PROBE["decode_tps"] / 4))
    n = 1_777_088_000
    assert slow.step_seconds("reference pass", n, chunks=8) == pytest.approx(
        2 * plain.step_seconds("reference pass", n, chunks=8))
    assert slow.step_seconds("measure gguf Q8_0", n, chunks=8) == pytest.approx(
        2 * plain.step_seconds("measure gguf Q8_0", n, chunks=8))
    assert slow.step_seconds("serve gguf Q4_K_M", n) == pytest.approx(4 * plain.step_seconds("serve gguf Q4_K_M", n))
    assert slow.step_seconds("humaneval gguf F16", n, chunks=10) == pytest.approx(
        4 * plain.step_seconds("humaneval gguf F16", n, chunks=10))
    for step in ("acquire", "convert", "build gguf Q4_K_M", "build onnx int4"):
        assert slow.step_seconds(step, n) == pytest.approx(plain.step_seconds(step, n)), step
    assert slow.rate("reference pass").basis == "built-in default x2.00 (this host's probe)"
    assert plain.rate("reference pass").basis == "built-in default"


def test_another_hosts_records_are_scaled_by_the_two_probes_and_this_hosts_are_not():
    fast = _probe(400.0, 200.0)
    here = _probe(100.0, 100.0)
    theirs = record("hw-b", ("reference pass", 50.0, 10.0, False), ("acquire", 30.0, 1.0, False))
    theirs.probe = fast
    assert CostModel([theirs], "hw-a", here).seconds("reference pass", 10.0) == pytest.approx(4 * 50.0)
    assert CostModel([theirs], "hw-a", here).seconds("acquire", 1.0) == pytest.approx(30.0)  # runs no model
    unprobed = record("hw-b", ("reference pass", 50.0, 10.0, False))
    assert CostModel([unprobed], "hw-a", here).seconds("reference pass", 10.0) == pytest.approx(50.0)
    mine = record("hw-a", ("reference pass", 50.0, 10.0, False))
    mine.probe = fast  # this host's own records are its time already
    assert CostModel([mine], "hw-a", here).seconds("reference pass", 10.0) == pytest.approx(50.0)


def test_the_f16s_speed_only_measure_has_its_own_fixed_cost():
    """The f16's measure starts one worker (speed), the others two (quality, speed): one fixed cost
    shared by all priced SmolLM2's f16 measure at 3.5x what it took."""
    from tasks.plan.costs import model_gb

    runs = []
    for name, n in (("micro", 135_000_000), ("small", 1_780_000_000)):
        f16_gb, q8_gb = model_gb("measure gguf F16", n), model_gb("measure gguf Q8_0", n)
        runs.append(RunRecord(hardware_id="hw", model=name, n_weights=n, steps=[
            StepRecord(step="measure m-gguf-f16", wall_s=10 + 30 * f16_gb, peak_rss_bytes=1, units=n / 1e9 * 4),
            StepRecord(step="measure m-gguf-q8_0", wall_s=100 + 200 * q8_gb, peak_rss_bytes=1, units=n / 1e9 * 4),
        ]))
    model = CostModel(runs, "hw")
    f16, q8 = model.rate("measure gguf F16"), model.rate("measure gguf Q8_0")
    assert (f16.fixed_seconds, f16.seconds_per_unit) == (pytest.approx(10, abs=0.5), pytest.approx(30, rel=0.02))
    assert (q8.fixed_seconds, q8.seconds_per_unit) == (pytest.approx(100, abs=0.5), pytest.approx(200, rel=0.02))


def test_a_type_not_recorded_is_scaled_as_the_recorded_types_ran_against_their_own_lines():
    # This host built a Q8_0 exactly as fast as the built-in Q8_0 line says: nothing tells it is a fast
    # or a slow host, so the K-quant it never built keeps its own built-in line. (Against the kind's line,
    # the Q8_0, a quarter of a K-quant's work, read as a host 3x as fast: 25 s predicted, 62 s measured.)
    fixed, per_unit = DEFAULT_COSTS["build gguf q8_0"]
    q8 = record("hw-a", ("build gguf Q8_0", fixed + per_unit * 1.78, 1.78, False))
    model = CostModel([q8], "hw-a")
    assert model.seconds("build gguf Q8_0", 1.78) == pytest.approx(fixed + per_unit * 1.78)
    assert model.seconds("build gguf Q4_K_M", 1.78) == pytest.approx(CostModel([], "hw-a").seconds(
        "build gguf Q4_K_M", 1.78))


def test_a_quick_protocols_measures_do_not_price_a_full_protocols():
    from tasks.evaluate import EvalConfig
    from tasks.plan.records import evaluation_protocol

    full, quick = EvalConfig(), EvalConfig(max_chunks=2, prefill_tokens=128, decode_tokens=32)
    assert evaluation_protocol(full) == evaluation_protocol(EvalConfig())
    assert evaluation_protocol(full) != evaluation_protocol(quick)
    # A quick run of the 1.5B: its measure and reference pass took a fraction of a full run's.
    steps = [StepRecord(step="measure m-gguf-q8_0", wall_s=60.0, peak_rss_bytes=1, units=1.78 * 6),
             StepRecord(step="reference pass", wall_s=20.0, peak_rss_bytes=1, units=1.78 * 2),
             StepRecord(step="convert", wall_s=40.0, peak_rss_bytes=1, units=1.78)]
    quick_run = RunRecord(hardware_id="hw", model="m", n_weights=1_780_000_000, steps=steps,
                          protocol=evaluation_protocol(quick))
    built_in = CostModel([], "hw")
    planned_full = CostModel([quick_run], "hw", protocol=evaluation_protocol(full))
    planned_quick = CostModel([quick_run], "hw", protocol=evaluation_protocol(quick))
    for step, units in (("measure gguf Q8_0", 1_780_000_000), ("reference pass", 1_780_000_000)):
        assert planned_full.step_seconds(step, units, chunks=32) == pytest.approx(
            built_in.step_seconds(step, units, chunks=32))  # the quick run says nothing of a full one
        assert planned_quick.step_seconds(step, units, chunks=2) < built_in.step_seconds(step, units, chunks=2)
    # Steps the protocol does not shape learn from every run.
    assert planned_full.seconds("convert", 1.78) == pytest.approx(40.0, rel=0.01)
