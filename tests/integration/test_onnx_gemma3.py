"""Gemma 3 through the real ONNX export (Olive + onnxruntime-genai's model builder, transformers 5),
on a tiny random Gemma 3 with one global and five sliding-window layers.

The fp32 graph must compute what transformers computes: that is what shows the transformers-5
RoPE settings reached the builder with the right values (a wrong global theta or a missing
local one changes the logits, it does not crash). The int4 graphs show what the embeddings
option does to the folder and that the quantized graphs still agree with it.
"""

import shutil

import numpy as np
import pytest

from tasks.formats.onnx import runtime
from tasks.formats.onnx.export import OnnxExportConfig, export_onnx

SEQUENCE = 48  # longer than the sliding window, so the local layers' masking is exercised too


@pytest.fixture(scope="module")
def tiny_gemma3_dir(tmp_path_factory, embedded_tokenizer_dir):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gemma3")
    config = Gemma3TextConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=16, max_position_embeddings=1024,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    Gemma3ForCausalLM(config).save_pretrained(out)
    for item in embedded_tokenizer_dir.iterdir():
        shutil.copy(item, out / item.name)
    return out


@pytest.fixture(scope="module")
def torch_logits(tiny_gemma3_dir):
    import torch
    from transformers import Gemma3ForCausalLM

    ids = list(np.random.default_rng(0).integers(3, 49152, SEQUENCE))
    model = Gemma3ForCausalLM.from_pretrained(tiny_gemma3_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return ids, model(torch.tensor([ids])).logits[0].numpy()


def _onnx_logits(folder, ids):
    loaded = runtime.load(folder, n_ctx=64, threads=1)
    return loaded.chunk_logits(ids, 0)


def test_gemma3_exports_and_computes_what_transformers_computes(tiny_gemma3_dir, torch_logits, tmp_path):
    ids, expected = torch_logits
    result = export_onnx(tiny_gemma3_dir, tmp_path / "fp32", OnnxExportConfig(precision="fp32"))
    assert {"model.onnx", "genai_config.json"} <= set(result.files)
    logits = _onnx_logits(result.out_dir, ids)
    assert logits.shape == expected[:-1].shape
    np.testing.assert_allclose(logits, expected[:-1], atol=2e-3 * np.abs(expected).max())
    assert (logits.argmax(-1) == expected[:-1].argmax(-1)).mean() > 0.97


def test_int4_embeddings_option_shrinks_the_folder(tiny_gemma3_dir, torch_logits, tmp_path):
    ids, expected = torch_logits
    sizes, graphs = {}, {}
    for mode in ("float", "int4", "shared"):  # this model ties its matrices: 'shared' keeps one int4 copy
        result = export_onnx(tiny_gemma3_dir, tmp_path / mode, OnnxExportConfig(precision="int4", embeddings=mode))
        sizes[mode], graphs[mode] = result.size_bytes, result.out_dir
        assert result.embeddings == mode
    embedding_fp32 = 49152 * 64 * 4
    # The fp32 copy is gone (under Olive 0.13 this needs the builder's own make_embedding back).
    assert sizes["float"] - sizes["int4"] > 0.7 * embedding_fp32 and sizes["shared"] < sizes["int4"]
    import onnx

    for mode in ("int4", "shared"):
        graph = onnx.load(graphs[mode] / "model.onnx", load_external_data=False).graph
        assert "GatherBlockQuantized" in {node.op_type for node in graph.node}, mode
    for mode in sizes:  # a random model's logits are nearly flat: int4 noise moves argmaxes, not the shape
        correlation = np.corrcoef(_onnx_logits(graphs[mode], ids).ravel(), expected[:-1].ravel())[0, 1]
        assert correlation > 0.85, (mode, correlation)
