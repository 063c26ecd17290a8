"""The recommendation rule on runs shaped like mlflow.search_runs' frame (values chosen by hand)."""

from __future__ import annotations

import pandas as pd

from tasks.review.devices import DeviceProfile
from tasks.review.fit import KvLayout
from tasks.review.recommend import recommend, recommend_per_tier

LAYOUT = KvLayout(architecture="llama", n_head_kv=[3] * 30, head_dim_k=64, head_dim_v=64,
                  swa_layers=[False] * 30, kv_layers=30).to_params()
MIB = 2**20
# SmolLM2 KV at the worker's context 1032 (padded 1280): 23,040 B/token x 1280 = 29,491,200 B.
MEASURED_KV = 29_491_200


def run(name, *, quant, kld, se=0.001, size=100, overhead=50, gate="pass", tps=100.0, eff=0.5, start=1,
        hardware="host-a", error=None):
    """A child run: sizes in MiB; peak RSS = weights + measured KV + overhead."""
    row = {"run_id": f"id-{name}-{start}", "start_time": pd.Timestamp(start, unit="s"), "status": "FINISHED",
           "tags.mlflow.runName": name, "params.format": "gguf", "params.quant": quant,
           "tags.slmforge.gate": gate, "tags.slmforge.gate_reasons": "kld_mean 0.9 > 0.5" if gate == "fail" else "-",
           "tags.slmforge.hardware_id": hardware, "metrics.size_bytes": size * MIB,
           "metrics.peak_rss_bytes": size * MIB + MEASURED_KV + overhead * MIB, "metrics.decode_tps": tps,
           "metrics.decode_efficiency": eff, "metrics.weight_bytes": size * MIB, "params.speed_n_ctx": "1032",
           **{f"params.{k}": v for k, v in LAYOUT.items()}}
    if kld is not None:
        row.update({"metrics.kld_mean": kld, "metrics.kld_mean_se": se})
    if quant == "F16":
        row.update({"metrics.perplexity": 10.0, "tags.slmforge.is_base": "true"})
    if error:
        row.update({"status": "FAILED", "tags.slmforge.error": error})
    return row


def device(budget_mib, **extra):
    # context 1024, f16: KV 23,040 x 1024 = 22.5 MiB; usable = budget x 0.9.
    return DeviceProfile(name="dev", memory_budget=budget_mib * MIB, context_length=1024, kv_cache_type="f16",
                         threads=4, margin=0.1, **extra)


def frame(*rows):
    return pd.DataFrame(list(rows))


def test_best_quality_that_fits_and_why_the_better_ones_lost():
    runs = frame(run("m-f16", quant="F16", kld=None, size=260),
                 run("m-q8", quant="Q8_0", kld=0.004, size=140),
                 run("m-q6", quant="Q6_K", kld=0.009, size=130, gate="fail"),
                 run("m-q4", quant="Q4_K_M", kld=0.06, size=100))
    # q8 needs 140 + 22.5 + 50 = 212.5 MiB; the f16 needs 260 + 22.5 + 50 = 332.5 MiB; usable 270 MiB.
    answer = recommend(runs, device(300))
    assert answer.pick.name == "m-q8"
    assert answer.pick.fit.need_bytes == 140 * MIB + 23_592_960 + 50 * MIB
    assert answer.notes == ["m-f16: does not fit: needs 332.5 MiB (weights 260.0 MiB + KV 22.5 MiB f16 + overhead "
                            "50.0 MiB) > 270.0 MiB usable (300.0 MiB budget less 10% margin)"]
    # Smaller device: q8 no longer fits, q6 failed its gate, q4 is picked; each better one says why.
    answer = recommend(runs, device(200))
    assert answer.pick.name == "m-q4"
    reasons = dict(note.split(": ", 1) for note in answer.notes)
    assert reasons["m-q6"] == "gate fail: kld_mean 0.9 > 0.5"
    assert reasons["m-q8"].startswith("does not fit: needs 212.5 MiB") and "> 180.0 MiB usable" in reasons["m-q8"]
    assert reasons["m-f16"].startswith("does not fit")


def test_nothing_fits():
    answer = recommend(frame(run("m-q4", quant="Q4_K_M", kld=0.06, size=100)), device(100))
    assert answer.pick is None and answer.notes[0].startswith("m-q4: does not fit")


def test_tie_within_noise_goes_to_the_faster_decode():
    # 0.0040 vs 0.0043, se 0.0002 each: 2 x sqrt(2) x 0.0002 = 0.00057 > 0.0003 -> a tie.
    runs = frame(run("m-a", quant="Q8_0", kld=0.0040, se=0.0002, eff=0.3),
                 run("m-b", quant="Q6_K", kld=0.0043, se=0.0002, eff=0.6),
                 run("m-c", quant="Q4_0", kld=0.0100, se=0.0002, eff=0.9))
    answer = recommend(runs, device(1000, memory_bandwidth=10_000_000_000))
    assert answer.pick.name == "m-b" and answer.pick.speed_kind == "predicted"
    # predicted decode = efficiency x bandwidth / bytes per token = 0.6 x 1e10 / (100 MiB)
    assert abs(answer.pick.decode_tps - 0.6 * 1e10 / (100 * MIB)) < 1e-9
    assert answer.notes[0].startswith("m-a: tied on quality within noise, but decodes slower")


def anchored(row, rel, rel_se=0.02, anchor="f16:0011"):
    return {**row, "metrics.decode_tps_rel": rel, "metrics.decode_tps_rel_se": rel_se, "params.speed_anchor": anchor}


def test_speeds_timed_beside_one_anchor_tie_within_their_noise_and_the_smaller_wins():
    """Measured on the device, beside the same f16: m-a decoded faster in raw tok/s (a burst that met a
    quiet moment), but per anchor the two are within 2 x sqrt(2) x 0.02 = 0.057: indistinguishable,
    so the smaller file wins and the note says why. Beyond that noise, the faster per anchor wins."""
    host = dict(hardware_id="host-a")
    runs = frame(anchored(run("m-a", quant="Q5_K_M", kld=0.0040, se=0.0002, size=120, tps=130.0), 2.00),
                 anchored(run("m-b", quant="Q4_K_M", kld=0.0043, se=0.0002, size=100, tps=110.0), 1.96))
    answer = recommend(runs, device(1000, **host))
    assert answer.pick.name == "m-b" and answer.pick.speed_kind == "measured"
    assert answer.notes == ["m-a: tied on quality and on speed within noise (2.000 vs 1.960 x the f16's decode, "
                            "timed side by side), and larger"]
    runs = frame(anchored(run("m-a", quant="Q5_K_M", kld=0.0040, se=0.0002, size=120, tps=100.0), 2.20),
                 anchored(run("m-b", quant="Q4_K_M", kld=0.0043, se=0.0002, size=100, tps=110.0), 1.96))
    assert recommend(runs, device(1000, **host)).pick.name == "m-a"  # per anchor it is faster, raw says otherwise


def test_measured_on_the_device_uses_those_runs_and_their_speed():
    runs = frame(run("m-q8", quant="Q8_0", kld=0.004, tps=10.0, hardware="pi5", start=1),
                 run("m-q8", quant="Q8_0", kld=0.004, tps=99.0, hardware="host-a", start=5),
                 run("m-q4", quant="Q4_0", kld=0.2, tps=50.0, hardware="host-a", start=5))
    answer = recommend(runs, device(1000, hardware_id="pi5"))
    assert answer.measured_on_device and [c.name for c in answer.candidates] == ["m-q8"]
    assert answer.pick.decode_tps == 10.0 and answer.pick.speed_kind == "measured"
    # Another device, never measured: the latest run per variant from any host, speed not predicted
    # without a bandwidth.
    answer = recommend(runs, device(1000))
    assert not answer.measured_on_device and answer.pick.run_id == "id-m-q8-5" and answer.pick.speed_kind == "none"


def test_missing_figures_and_failed_runs_are_named():
    no_layout = run("m-old", quant="Q8_0", kld=0.001)
    del no_layout["params.model.n_layer"]
    runs = frame(no_layout, run("m-err", quant="Q6_K", kld=None, error="worker killed"),
                 run("m-q4", quant="Q4_0", kld=0.2))
    answer = recommend(runs, device(1000))
    reasons = dict(note.split(": ", 1) for note in answer.notes)
    assert answer.pick.name == "m-q4"
    assert reasons["m-old"].startswith("no figures: params.model.n_layer not recorded")
    assert reasons["m-err"] == "run failed: worker killed"


def test_onnx_keeps_its_own_kv_type_and_its_measured_kv_counts_as_overhead():
    row = run("m-int4", quant="int4", kld=0.3, size=200, overhead=20)
    row.update({"params.format": "onnx", "params.runtime_kv_type": "f32"})
    answer = recommend(frame(row), device(1000))
    fit = answer.pick.fit
    # f32 KV at the device's 1024 cells: 192 values x 4 B x 2 (K, V) x 30 layers x 1024 = 47,185,920 B,
    # whatever the device's cache type; overhead = peak - weights = measured KV + 20 MiB.
    assert fit.kv_cache_type == "f32" and fit.kv_bytes == 47_185_920
    assert fit.overhead_bytes == MEASURED_KV + 20 * MIB


def _log_child(client, experiment_id, parent_id, row):
    """One of the rows above as a real child run: params, metrics and tags as the pipeline logs them."""
    from mlflow.entities import Metric, Param, RunTag

    tags = {k[5:]: v for k, v in row.items() if k.startswith("tags.")}
    child = client.create_run(experiment_id, run_name=tags.pop("mlflow.runName"),
                              tags={**tags, "mlflow.parentRunId": parent_id})
    client.log_batch(child.info.run_id,
                     metrics=[Metric(k[8:], float(v), 0, 0) for k, v in row.items() if k.startswith("metrics.")],
                     params=[Param(k[7:], str(v)) for k, v in row.items() if k.startswith("params.")])
    client.set_terminated(child.info.run_id, row["status"])


def test_cli_reads_a_real_store_and_names_the_pick(tmp_path):
    """`slmforge recommend` end to end on a SQLite MLflow store: the reader keeps child runs only,
    --model filters them, an unknown experiment is named with the ones there."""
    import yaml
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from tasks.cli.main import app
    from tasks.tracking import client as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, "exp", uri)
    parent = tracking.start_run(client, experiment_id, name="pipeline", tags={})
    for row in (run("m-gguf-f16", quant="F16", kld=None, size=260), run("m-gguf-q8_0", quant="Q8_0", kld=0.004, size=140),
                run("m-gguf-q4_0", quant="Q4_0", kld=0.2, size=80), run("other-gguf-q8_0", quant="Q8_0", kld=0.001, size=10)):
        _log_child(client, experiment_id, parent, row)
    profile = tmp_path / "dev.yaml"  # 200 MiB x 0.9 usable: Q8_0 needs 140 + 28.1 + 22.5 (KV at 1024) + 50 -> too big
    profile.write_text(yaml.safe_dump({"memory_budget": "200MiB", "context_length": 1024, "threads": 4, "margin": 0.1}))

    result = CliRunner().invoke(app, ["recommend", "--device", str(profile), "--tracking-uri", uri, "--model", "m-gguf"])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "recommended: m-gguf-q4_0" in output and "m-gguf-q8_0" in output and "other-gguf" not in output
    assert "pipeline" not in output  # the parent run is no candidate
    assert "m-gguf-q8_0: does not fit" in output, output

    missing = CliRunner().invoke(app, ["recommend", "--device", str(profile), "--tracking-uri", uri,
                                       "--experiment", "absent"])
    assert missing.exit_code == 1 and "no MLflow experiment named ['absent']" in " ".join(missing.output.split())


def test_one_answer_per_tier_smallest_first():
    # Each KLD is against its own model's reference: a 1.5B's Q4 must not be ranked against a 135M's Q8.
    micro = [dict(run("s-q8", quant="Q8_0", kld=0.004, size=140), **{"tags.slmforge.tier": "micro"}),
             dict(run("s-q4", quant="Q4_K_M", kld=0.06, size=100), **{"tags.slmforge.tier": "micro"})]
    small = [dict(run("q-q8", quant="Q8_0", kld=0.001, size=1800), **{"tags.slmforge.tier": "small"}),
             dict(run("q-q4", quant="Q4_K_M", kld=0.02, size=1000), **{"tags.slmforge.tier": "small"})]
    untagged = run("old-q8", quant="Q8_0", kld=0.0001, size=140)  # a run from before tiers were tagged
    answers = recommend_per_tier(frame(*small, *micro, untagged), device(1200))
    assert [a.tier for a in answers] == ["micro", "small", "unknown"]
    assert [a.pick.name if a.pick else None for a in answers] == ["s-q8", "q-q4", "old-q8"]
    assert {c.name for c in answers[1].candidates} == {"q-q8", "q-q4"}  # no micro run ranked in the small tier
    assert "does not fit" in answers[1].candidates[0].excluded  # q8: 1800 MiB > 1080 MiB usable
    # Runs with no tier tag at all: one answer, as before tiers.
    assert [a.tier for a in recommend_per_tier(frame(untagged), device(300))] == ["unknown"]


def test_the_answer_says_what_each_kld_is_against():
    import io

    from rich.console import Console

    from tasks.review.show import print_recommendation

    reference = "f16 of the dequantized Q4_K_M source"
    out = io.StringIO()
    rows = [dict(run("q-q4", quant="Q4_K_M", kld=0.006, size=100), **{"params.reference": reference})]
    print_recommendation(recommend(frame(*rows), device(300)), Console(file=out, width=250))
    assert f"kld_mean against: {reference}" in out.getvalue()


def test_figures_measured_on_another_text_are_not_ranked_against_the_newest():
    """Another host's Python shipped another builtin text: its far better KLD is not comparable."""
    new_text, old_text = "aaaaaaaaaaaaaaaa:ctx512x24", "bbbbbbbbbbbbbbbb:ctx512x24"
    runs = frame({**run("m-q8", quant="Q8_0", kld=0.004, size=140, start=20), "params.eval_text": new_text},
                 {**run("m-q4", quant="Q4_K_M", kld=0.0001, size=100, start=10), "params.eval_text": old_text})
    answer = recommend(runs, device(1000))
    assert answer.pick.name == "m-q8"
    q4 = next(c for c in answer.candidates if c.name == "m-q4")
    assert q4.excluded.startswith(f"quality measured on another text ({old_text}) than the newest runs' ({new_text})")
    assert any(note.startswith("m-q4: quality measured on another text") for note in answer.notes)
    # One text (or none recorded) everywhere: nothing is excluded for it.
    same = frame({**run("m-q8", quant="Q8_0", kld=0.004, size=140, start=20), "params.eval_text": new_text},
                 {**run("m-q4", quant="Q4_K_M", kld=0.0001, size=100, start=10), "params.eval_text": new_text})
    assert recommend(same, device(1000)).pick.name == "m-q4"


def test_quality_ties_are_judged_chunk_by_chunk_when_the_runs_logged_their_chunks():
    """kld_mean_se over tokens (1e-5) calls 0.0040 vs 0.0043 apart; over chunks, where m-b is below
    m-a on some chunks and above on others, the paired interval holds 0: a tie, and the faster wins,
    with the interval in the note. A difference every chunk shows stays a difference."""
    a = [0.004, 0.001, 0.009, 0.002, 0.006, 0.002]
    b_mixed = [0.006, 0.000, 0.007, 0.005, 0.005, 0.0028]
    runs = frame({**run("m-a", quant="Q5_K_M", kld=0.0040, se=1e-5, eff=0.3), "chunks.kld": a},
                 {**run("m-b", quant="Q4_K_M", kld=0.0043, se=1e-5, eff=0.6), "chunks.kld": b_mixed})
    answer = recommend(runs, device(1000, memory_bandwidth=10_000_000_000))
    assert answer.pick.name == "m-b" and "indistinguishable" in answer.pick.quality_vs_best
    assert answer.notes[0].startswith("m-a: tied on quality within noise; kld_mean ")
    b_worse = [x * 1.2 for x in a]
    runs = frame({**run("m-a", quant="Q5_K_M", kld=0.0040, se=0.01, eff=0.3), "chunks.kld": a},
                 {**run("m-b", quant="Q4_K_M", kld=0.0048, se=0.01, eff=0.6), "chunks.kld": b_worse})
    assert recommend(runs, device(1000, memory_bandwidth=10_000_000_000)).pick.name == "m-a"
