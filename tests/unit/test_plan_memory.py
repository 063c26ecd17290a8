"""Memory planning: the limit reader on fake /proc and /sys trees, the per-step predictions, the choice
of a strategy and the error raised before any work."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tasks.core.errors import InsufficientMemoryError, UserError
from tasks.plan import needs
from tasks.plan.limits import MemoryLimit, killed_by_signal_message, read_memory_limit
from tasks.plan.shapes import ModelShape, dense_shape, medium_tier_shapes

GiB = 2**30
# Qwen2.5-Coder-1.5B as its Q4_K_M GGUF header says (the real small-tier model).
QWEN15 = ModelShape(name="qwen1.5b", architecture="qwen2", n_weights=1_777_088_000, n_layers=28, hidden=1536, vocab=151_936,
                    n_kv_heads=2, head_dim=128, source_bytes=1_117_320_768, source_quantized=True)


def fake_proc(tmp_path: Path, *, meminfo_kib: int, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {meminfo_kib} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text("\n".join(mounts) + "\n")
    return proc


def write_files(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_DOT_", ".")).write_text(text)


def test_no_cgroup_limit_gives_the_hosts_available_memory(tmp_path):
    sysfs = tmp_path / "sys"
    write_files(sysfs / "memory" / "job", **{"memory.limit_in_bytes": str(9223372036854771712),
                                             "memory.usage_in_bytes": "1000"})
    proc = fake_proc(tmp_path, meminfo_kib=8 * 1024 * 1024, cgroup="4:memory:/job\n0::/\n",
                     mounts=[f"30 25 0:27 / {sysfs}/memory rw - cgroup cgroup rw,memory"])
    limit = read_memory_limit(proc)
    assert limit.available_bytes == 8 * GiB and limit.cgroup_limit_bytes is None
    assert "no cgroup memory limit" in limit.describe()


def test_cgroup_v1_room_is_the_limit_minus_usage_less_unmapped_page_cache(tmp_path):
    """Seen: 3.9 GiB "in use" right after acquire wrote 3.3 GB of weights: page cache, dropped before any kill."""
    sysfs = tmp_path / "sys"
    stat = f"cache 1\ntotal_cache {GiB // 2}\ntotal_mapped_file {GiB // 4}\n"
    write_files(sysfs / "memory" / "job", **{"memory.limit_in_bytes": str(2 * GiB),
                                             "memory.usage_in_bytes": str(GiB // 2), "memory.stat": stat})
    proc = fake_proc(tmp_path, meminfo_kib=20 * 1024 * 1024, cgroup="4:memory:/job\n",
                     mounts=[f"30 25 0:27 / {sysfs}/memory rw,nosuid - cgroup cgroup rw,memory"])
    limit = read_memory_limit(proc)
    assert limit.cgroup_limit_bytes == 2 * GiB
    assert limit.available_bytes == 2 * GiB - GiB // 4  # usage 0.5 GiB, of which 0.25 GiB drops first
    assert str(sysfs / "memory" / "job") in limit.describe()


def test_cgroup_v2_parent_limit_counts_and_host_memory_can_be_tighter(tmp_path):
    sysfs = tmp_path / "sys"
    write_files(sysfs / "unified" / "a", **{"memory_DOT_max": str(4 * GiB), "memory_DOT_current": str(GiB)})
    write_files(sysfs / "unified" / "a" / "b", **{"memory_DOT_max": "max", "memory_DOT_current": str(GiB)})
    mounts = [f"31 25 0:28 / {sysfs}/unified rw - cgroup2 cgroup2 rw,nsdelegate"]
    proc = fake_proc(tmp_path, meminfo_kib=10 * 1024 * 1024, cgroup="0::/a/b\n", mounts=mounts)
    assert read_memory_limit(proc).available_bytes == 3 * GiB  # the parent's 4 GiB binds the child
    proc2 = fake_proc(tmp_path / "t", meminfo_kib=1024 * 1024, cgroup="0::/a/b\n", mounts=mounts)
    assert read_memory_limit(proc2).available_bytes == GiB  # the host has less free than the cgroup


def test_container_view_strips_the_mount_root(tmp_path):
    """Inside a container the memory hierarchy is mounted at its own cgroup: /proc/self/cgroup still
    names the full path, the mount's root field says which part is above the mount point."""
    sysfs = tmp_path / "sys"
    write_files(sysfs / "memory", **{"memory.limit_in_bytes": str(3 * GiB), "memory.usage_in_bytes": "0"})
    proc = fake_proc(tmp_path, meminfo_kib=20 * 1024 * 1024, cgroup="4:memory:/docker/abc\n",
                     mounts=[f"30 25 0:27 /docker/abc {sysfs}/memory rw - cgroup cgroup rw,memory"])
    assert read_memory_limit(proc).available_bytes == 3 * GiB


def test_this_machine_reads_without_error():
    limit = read_memory_limit()
    assert 0 < limit.available_bytes <= limit.host_available_bytes


def test_sigkill_is_reported_as_out_of_memory_with_the_limit():
    limit = MemoryLimit(available_bytes=GiB, host_available_bytes=20 * GiB, cgroup_limit_bytes=2 * GiB,
                        cgroup_usage_bytes=GiB, cgroup_path="/sys/fs/cgroup/memory/job")
    text = killed_by_signal_message(-signal.SIGKILL, "The dequantize of x.gguf", limit)
    assert "probably out of memory" in text and "limit 1.00 GiB" in text and "2.00 GiB" in text
    assert "SIGTERM" in killed_by_signal_message(-signal.SIGTERM, "x")
    assert killed_by_signal_message(1, "x") is None


# Peak RSS measured on the 2-core host: (model, strategy) -> bytes. The predictions must stay within 15 %
# of them. The transformers path: pipeline steps' records (what the plan predicts; a bare process,
# tests/benchmarks/measure_step_memory.py, peaks about 0.5 GB lower at micro size); the streaming path:
# measure_step_memory.py.
MEASURED = {
    ("qwen", "transformers-float32"): 14_729_453_568,  # the 1.5B's pipeline run
    ("qwen", "streaming-float32"): int(2.27 * GiB),
    ("qwen", "streaming-bfloat16"): int(2.03 * GiB),  # the pipeline run's record, less the Prefect server
    ("smol", "transformers-bfloat16"): 1_644_371_968,  # a newcomer's default run
    ("gemma", "transformers-float32"): int(3.10 * GiB),  # Gemma 3 270M's pipeline run of 2026-12-03
    ("smol", "streaming-float32"): int(0.86 * GiB),
    ("smol", "streaming-bfloat16"): int(0.78 * GiB),
}
SMOL = ModelShape(name="smol", architecture="llama", n_weights=134_515_008, n_layers=30, hidden=576, vocab=49_152,
                  n_kv_heads=3, head_dim=64, source_bytes=98_362_432, source_quantized=True)
# Gemma 3 270M as its Q4_K_M GGUF header says: a third size and architecture (the largest vocabulary).
GEMMA = ModelShape(name="gemma", architecture="gemma3", n_weights=268_098_176, n_layers=18, hidden=640, vocab=262_144,
                   n_kv_heads=1, head_dim=256, source_bytes=253_113_024, source_quantized=True)


@pytest.mark.parametrize(("model", "strategy"), sorted(MEASURED))
def test_dequantize_predictions_are_within_15_percent_of_the_measured_peaks(model, strategy):
    shape = {"qwen": QWEN15, "smol": SMOL, "gemma": GEMMA}[model]
    need = next(n for n in needs.dequantize_needs(shape, strategy.split("-")[1]) if n.strategy == strategy)
    assert need.peak_bytes == pytest.approx(MEASURED[model, strategy], rel=0.15)


def test_the_default_f32_dequantize_of_the_15b_needs_far_more_than_streaming():
    whole, stream, stream_bf16 = needs.dequantize_needs(QWEN15, "float32")
    assert whole.strategy == "transformers-float32" and stream.strategy == "streaming-float32"
    assert whole.peak_bytes > 12 * GiB            # packed tensors + the model twice at f32
    assert stream.peak_bytes < 3 * GiB            # the tokenizer and the largest tensor
    assert stream_bf16.disk_bytes == whole.disk_bytes // 2


def test_an_architecture_the_streaming_path_does_not_know_has_only_the_transformers_path():
    gemma = QWEN15.model_copy(update={"architecture": "gemma3"})
    assert [n.strategy for n in needs.dequantize_needs(gemma, "float32")] == ["transformers-float32"]


def test_choose_takes_the_first_strategy_that_fits_and_names_it():
    limit = MemoryLimit(available_bytes=4 * GiB, host_available_bytes=20 * GiB)
    chosen = needs.choose(needs.dequantize_needs(QWEN15, "bfloat16"), limit)
    assert chosen.strategy == "streaming-bfloat16"


def test_nothing_fits_fails_before_work_naming_step_need_limit_and_remedy():
    limit = MemoryLimit(available_bytes=GiB // 2, host_available_bytes=20 * GiB, cgroup_limit_bytes=GiB,
                        cgroup_usage_bytes=GiB // 2, cgroup_path="/sys/fs/cgroup/memory/x")
    with pytest.raises(InsufficientMemoryError) as info:
        needs.choose(needs.dequantize_needs(QWEN15, "float32"), limit, remedy="give the cgroup 3 GiB")
    message = str(info.value)
    assert isinstance(info.value, UserError)  # never retried
    assert "'acquire'" in message and "0.50 GiB" in message and "Nothing was started" in message
    assert "give the cgroup 3 GiB" in message and "streaming-float32" in message


def test_reference_disk_matches_the_measured_bytes_per_scored_token():
    # Seen with e1be68a: 303,883 bytes per scored token for a 151,936-token vocabulary.
    need = needs.reference_need(QWEN15, n_ctx=512, chunks=24)
    assert need.disk_bytes / (24 * 255) == pytest.approx(303_883, rel=0.001)


def test_kv_cache_of_the_15b_follows_its_gqa_shape():
    # 28 layers x 2 (K, V) x 2 KV heads x 128 x 2 bytes = 28 KiB per token.
    assert QWEN15.kv_bytes(512) == 512 * 28 * 2 * 2 * 128 * 2


def test_medium_shapes_have_their_published_sizes():
    q14, q30 = medium_tier_shapes(4.85)
    assert q14.n_weights == pytest.approx(14.7e9, rel=0.02)  # Qwen2.5-14B: 14.7B
    assert 28e9 < q30.n_weights < 30e9
    assert q14.source_bytes == pytest.approx(q14.n_weights * 4.85 / 8, rel=1e-6) and q14.source_quantized
    assert dense_shape("t", n_layers=1, hidden=8, ffn=16, vocab=10, n_heads=2, n_kv_heads=1, tied=True).n_weights > 0


def test_a_dequantize_killed_by_the_oom_killer_says_so(tmp_path, monkeypatch):
    """Before: `Could not dequantize … with transformers: Converting and de-quantizing…: 0%`."""
    import subprocess

    from tasks.acquire import gguf_source
    from tasks.core.errors import SourceError

    killed = subprocess.CompletedProcess([], -signal.SIGKILL, "", "Converting and de-quantizing GGUF tensors...: 0%")
    monkeypatch.setattr(gguf_source.subprocess, "run", lambda *a, **k: killed)
    with pytest.raises(SourceError, match=r"killed by SIGKILL, probably out of memory: limit .*GiB") as info:
        gguf_source.dequantize_to_hf(tmp_path / "m.gguf", tmp_path / "out", dtype="float32")
    assert "The dequantize of m.gguf (transformers, float32)" in str(info.value)


@pytest.mark.parametrize("need, measured_gib", [
    # Peaks of the 1.5B's pipeline run (4973776, configs/qwen2.5-coder-1.5b.yaml; the step records).
    (lambda: needs.convert_need(QWEN15, 4.0, "f16"), 1.68),  # f32 checkpoint in: the peak follows the output
    (lambda: needs.convert_need(QWEN15, 2.0, "f16"), 1.81),  # bf16 in (an earlier run)
    (lambda: needs.quantize_need(QWEN15, 8.5, "Q8_0"), 1.76),
    (lambda: needs.quantize_need(QWEN15, 4.55, "Q4_0"), 1.57),
    (lambda: needs.imatrix_need(QWEN15, n_ctx=512), 5.32),  # llama-imatrix's 2,048-token batch
    (lambda: needs.reference_need(QWEN15, n_ctx=512, chunks=40), 4.54),
    (lambda: needs.onnx_export_need(QWEN15, "int4", 4.0), 13.46),
    (lambda: needs.serve_need(QWEN15, variant="gguf Q8_0", model_bytes=1_894_532_000, n_ctx=2048), 2.10),
    (lambda: needs.serve_need(QWEN15, variant="gguf Q4_0", model_bytes=1_066_227_104, n_ctx=2048), 2.01),  # repacked
    # Peaks of SmolLM2-135M's default run by a newcomer (13x smaller, vocabulary 49,152; the step records):
    # the process overheads' other end (tests/benchmarks/fit_plan_memory.py).
    (lambda: needs.quantize_need(SMOL, 8.5, "Q8_0"), 0.34),
    (lambda: needs.imatrix_need(SMOL, n_ctx=512), 0.83),
    (lambda: needs.reference_need(SMOL, n_ctx=512, chunks=24), 0.64),
    (lambda: needs.onnx_export_need(SMOL, "int4", 2.0), 2.85),
    (lambda: needs.serve_need(SMOL, variant="gguf Q8_0", model_bytes=142_922_196, n_ctx=2048), 0.37),
    # Peaks of Gemma 3 270M's pipeline run (vocabulary 262,144: the vocabulary-driven lines' far end).
    (lambda: needs.convert_need(GEMMA, 4.0, "f16"), 1.48),
    (lambda: needs.quantize_need(GEMMA, 8.5, "Q8_0"), 1.42),
    (lambda: needs.reference_need(GEMMA, n_ctx=512, chunks=32), 2.64),
    (lambda: needs.onnx_export_need(GEMMA, "int4", 4.0), 4.58),
])
def test_predicted_peaks_are_within_15_percent_of_the_measured_ones(need, measured_gib):
    assert need().peak_bytes / GiB == pytest.approx(measured_gib, rel=0.15)


@pytest.mark.parametrize("need, measured_gib", [
    # SmolLM2-135M's convert: a line through three sizes leaves the smallest high. High is the safe side
    # (a step may be refused that would have fit by a few hundred MB), never low.
    (lambda: needs.convert_need(SMOL, 2.0, "f16"), 1.10),
])
def test_at_micro_size_the_misses_err_high(need, measured_gib):
    assert 1.0 <= need().peak_bytes / GiB / measured_gib <= 1.3
