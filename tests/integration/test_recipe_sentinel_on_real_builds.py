"""The recipe sentinel on the real quantize path (tiny random Llama, llama.cpp's binding and
llama-quantize): llama.cpp's own files pass, the build is recorded, an ignored rule fails the variant."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_build_inputs

from tasks.formats import get_format
from tasks.formats.base import BuildInputs
from tasks.formats.gguf import quantize_tool
from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.llama_tools import tools_record
from tasks.formats.gguf.sentinel import RecipeMismatchError


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir) -> BuildInputs:
    store = tmp_path_factory.mktemp("sentinel-store")
    return tiny_build_inputs(store, tiny_model_dir)


def test_llama_cpps_own_files_pass_and_record_the_build(inputs):
    spec = {"type": "Q4_K_M", "name": "v8", "tensor_types": {r"attn_v": "q8_0"}}
    config = GgufConfig(types=["Q4_K_M", "Q8_0", spec], threads=1)
    fmt = get_format("gguf")
    for label in fmt.variants(config):  # the sentinel runs inside build and raises on a mismatch
        built = fmt.build(label, inputs, config)
        assert built.params["llama_cpp.build"]
    record = tools_record()  # the override went through the tools: their build line and compile recipe
    assert built.params["llama_cpp.build"] == f"{record['llama.cpp']}, {record['recipe']}"


def test_an_override_llama_cpp_ignored_fails_the_variant_naming_the_tensors(inputs, tmp_path, monkeypatch):
    real = quantize_tool.quantize_args

    def ignoring(*args, overrides, **kw):  # llama-quantize dropping --tensor-type, as it has done before
        return real(*args, overrides={k: v for k, v in overrides.items() if k != "tensor_types"}, **kw)

    monkeypatch.setattr(quantize_tool, "quantize_args", ignoring)
    own_store = inputs.model_copy(update={"store_root": tmp_path})  # the wrong file must not reach the shared store
    config = GgufConfig(types=[{"type": "Q4_0", "name": "v8", "tensor_types": {r"attn_v": "q8_0"}}], threads=1)
    with pytest.raises(RecipeMismatchError, match=r"Q4_0-v8(.|\n)*blk\.0\.attn_v\.weight: asked Q8_0 \(override "
                                                  r"Q8_0\), found Q4_0"):
        get_format("gguf").build("Q4_0-v8", own_store, config)
