"""The read limit is the best this host reaches, and no figure above it is called an efficiency."""

import json
import pickle

import pytest

from tasks.evaluate import bandwidth, read_kernel
from tasks.evaluate.bandwidth import (
    PROBE_VERSION, ReadBandwidth, cached_read_bandwidth, compile_read_kernel, decode_efficiency,
    measure_read_bandwidth,
)
from tasks.evaluate.derived import derived_metrics

SMALL = 4 * 2**20  # measures cache, not DRAM: these tests check the plumbing, not the machine


def test_a_decode_above_the_read_limit_has_no_efficiency():
    # 1.7B f16 (3.4 GB/token) at 10 tok/s reads 34 GB/s; a probe that measured 27.2 GB/s gave 1.25.
    assert decode_efficiency(10.0, 3.4e9, 27.2e9) is None
    assert decode_efficiency(10.0, 3.4e9, 68e9) == pytest.approx(0.5)
    assert decode_efficiency(10.0, 3e9, 3e10) == 1.0  # exactly at the limit is memory-bound, not over


def test_derived_metrics_flag_reads_above_the_limit_instead_of_an_efficiency():
    metrics = {"decode_tps": 10.0, "weight_bytes": 3.4e9}
    over = derived_metrics(metrics, {}, bandwidth=27.2e9)
    assert "decode_efficiency" not in over
    assert over["decode_read_bytes_per_s"] == pytest.approx(34e9)
    assert over["decode_efficiency_over_limit"] == 1.0
    within = derived_metrics(metrics, {}, bandwidth=68e9)
    assert within["decode_efficiency"] == pytest.approx(0.5)
    assert within["decode_efficiency_over_limit"] == 0.0
    assert within["decode_read_bytes_per_s"] == pytest.approx(34e9)


def test_the_read_rate_is_recorded_without_a_bandwidth():
    derived = derived_metrics({"decode_tps": 10.0, "weight_bytes": 1e9}, {}, bandwidth=None)
    assert derived == {"decode_read_bytes_per_s": 1e10}


def test_the_fastest_kernel_and_thread_count_is_the_limit(monkeypatch):
    monkeypatch.setattr(bandwidth.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(bandwidth, "_numpy_rate", lambda buffer, threads, reps: 1e9 * threads)
    monkeypatch.setattr(bandwidth, "_c_rate", lambda lib, buffer, threads, reps: 3e9 if threads == 2 else 1e9)
    monkeypatch.setattr(bandwidth, "compile_read_kernel", lambda cache_dir=None: (object(), ""))
    probe = measure_read_bandwidth(2, buffer_bytes=SMALL)
    assert set(probe.kernels) == {"numpy x1", "numpy x2", "numpy x4", "c x1", "c x2", "c x4"}
    assert probe == 4e9 and probe.kernel == "numpy x4"
    monkeypatch.setattr(bandwidth, "_c_rate", lambda lib, buffer, threads, reps: 9e9)
    assert measure_read_bandwidth(2, buffer_bytes=SMALL).kernel == "c x1"


def test_the_real_probe_runs_the_compiled_kernel(tmp_path):
    if compile_read_kernel(tmp_path)[0] is None:
        pytest.skip("no working C compiler on this machine")
    probe = measure_read_bandwidth(2, buffer_bytes=SMALL, repetitions=2, kernel_dir=tmp_path)
    assert {"c x1", "c x2", "numpy x1", "numpy x2"} <= set(probe.kernels)
    assert probe == max(probe.kernels.values()) > 1e8 and probe.note == ""
    assert pickle.loads(pickle.dumps(probe)).kernel == probe.kernel


def test_without_a_compiler_the_numpy_kernel_is_used_and_said(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(read_kernel.shutil, "which", lambda name: None)
    probe = measure_read_bandwidth(2, buffer_bytes=SMALL, repetitions=2, kernel_dir=tmp_path)
    assert probe > 1e8 and all(name.startswith("numpy") for name in probe.kernels)
    assert "no C compiler" in probe.note


def test_a_failing_compiler_falls_back_and_says_why(monkeypatch, tmp_path):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    lib, note = compile_read_kernel(tmp_path / "kernels")
    assert lib is None and "internal error" in note and "numpy kernel only" in note


def test_the_compiled_kernel_is_built_once(monkeypatch, tmp_path):
    if compile_read_kernel(tmp_path)[0] is None:
        pytest.skip("no working C compiler on this machine")
    built = sorted(tmp_path.glob("read_kernel-*.so"))

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again although the library is cached")

    monkeypatch.setattr(read_kernel.subprocess, "run", no_compiler)
    assert compile_read_kernel(tmp_path)[0] is not None
    assert sorted(tmp_path.glob("read_kernel-*.so")) == built and len(built) == 1
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".so")] == []  # no temp left


def test_a_probe_of_an_older_version_is_measured_again(tmp_path, monkeypatch):
    cache = tmp_path / "bandwidth.json"
    # What the numpy-only probe wrote: no probe version, a figure below what llama.cpp reads.
    cache.write_text(json.dumps({"hw-a/threads=2": {"bytes_per_s": 2.7e10, "threads": 2, "hardware_id": "hw-a"}}))
    monkeypatch.setattr(bandwidth, "measure_read_bandwidth",
                        lambda threads: ReadBandwidth({"c x2": 3.6e10, "numpy x2": 2.7e10}))
    assert cached_read_bandwidth(cache, "hw-a", 2) == 3.6e10
    entry = json.loads(cache.read_text())["hw-a/threads=2"]
    assert entry["probe_version"] == PROBE_VERSION and entry["kernel"] == "c x2"
    assert entry["kernels"] == {"c x2": 3.6e10, "numpy x2": 2.7e10}
    monkeypatch.setattr(bandwidth, "measure_read_bandwidth", lambda threads: pytest.fail("probed twice"))
    assert cached_read_bandwidth(cache, "hw-a", 2) == 3.6e10  # the new entry is reused
