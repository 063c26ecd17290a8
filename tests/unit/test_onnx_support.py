"""What the ONNX format can take (known before any work), the transformers-5 config mapped for
onnxruntime-genai's model builder, and how int4 stores the embedding matrix."""

import numpy as np
import pytest
from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

from tasks.core.errors import ConfigError, UnsupportedModelError
from tasks.formats import refusals, refuse_unsupported
from tasks.formats.onnx.config import OnnxTargets
from tasks.formats.onnx.embeddings import OnnxEmbeddingsError, embedding_options, resolve_embeddings
from tasks.formats.onnx.export import OnnxExportConfig, olive_workflow_config
from tasks.formats.onnx.legacy_config import legacy_rope_attributes, legacy_view
from tasks.formats.onnx.support import architectures_in_builder, builder_architectures, unsupported_reason

BUILDER_LIKE = '''
def create_model(model_name, config, **extra):
    if config.architectures[0] == "ChatGLMModel" or config.architectures[0] == "ChatGLMForConditionalGeneration":
        pass
    elif config.architectures[0] == "Phi3ForCausalLM" and config.max_position_embeddings == 4096:
        pass
    elif config.model_type == "not-an-architecture":
        pass

def other(config):
    return config.architectures[0] == "OnlyOutsideCreateModel"
'''


def test_architectures_are_read_from_the_builders_dispatch_chain():
    assert architectures_in_builder(BUILDER_LIKE) == {"ChatGLMModel", "ChatGLMForConditionalGeneration",
                                                      "Phi3ForCausalLM"}
    assert architectures_in_builder("def unrelated(): pass") == frozenset()


def test_installed_builder_exports_the_suites_architectures_and_not_gpt2():
    known = builder_architectures()
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM"} <= known
    assert "GPT2LMHeadModel" not in known
    assert unsupported_reason("Gemma3ForCausalLM") is None
    reason = unsupported_reason("GPT2LMHeadModel")
    assert "'GPT2LMHeadModel'" in reason and "Qwen2ForCausalLM" in reason and "remove 'onnx'" in reason
    assert unsupported_reason("Anything", known=frozenset()) is None  # unknown builder: nothing refused


def test_every_format_that_refuses_is_named_with_its_reason():
    formats = {"gguf": None, "onnx": OnnxTargets()}
    assert refusals("LlamaForCausalLM", formats) == []
    assert [r.split(":")[0] for r in refusals("GPT2LMHeadModel", formats)] == ["onnx"]  # llama.cpp takes GPT-2
    unknown = refusals("NoSuchModelForCausalLM", formats)
    assert [r.split(":")[0] for r in unknown] == ["gguf", "onnx"]
    with pytest.raises(UnsupportedModelError, match="nothing was converted") as info:
        refuse_unsupported("GPT2LMHeadModel", formats)
    assert "onnx: onnxruntime-genai's model builder has no exporter for architecture 'GPT2LMHeadModel'" in str(
        info.value)


def tiny_gemma3(**kwargs) -> Gemma3TextConfig:
    return Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=16,
                            max_position_embeddings=256, **kwargs)


def test_gemma3_rope_settings_get_their_transformers_4_names():
    config = tiny_gemma3()
    assert not hasattr(config, "rope_local_base_freq") and not hasattr(config, "rope_theta")  # transformers 5
    assert legacy_rope_attributes(config) == {"rope_theta": 1_000_000.0, "rope_scaling": None,
                                              "rope_local_base_freq": 10_000.0}
    view = legacy_view(config)
    assert view.rope_local_base_freq == 10_000.0 and view.rope_theta == 1_000_000.0 and view.rope_scaling is None
    assert view.sliding_window == config.sliding_window and view.architectures == config.architectures
    assert not hasattr(view, "no_such_attribute")
    view.bos_token_id = 7  # a write stays in the view: the real config is left as transformers made it
    assert view.bos_token_id == 7 and config.bos_token_id == 2


def test_scaled_rope_keeps_its_scaling_and_plain_configs_their_theta():
    scaled = tiny_gemma3(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                             "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    legacy = legacy_rope_attributes(scaled)
    assert legacy["rope_scaling"] == {"rope_type": "linear", "type": "linear", "factor": 8.0}
    assert (legacy["rope_theta"], legacy["rope_local_base_freq"]) == (1e6, 1e4)
    qwen = Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    assert legacy_rope_attributes(qwen) == {"rope_theta": 1e6, "rope_scaling": None}
    partial = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.5})
    assert legacy_rope_attributes(partial)["partial_rotary_factor"] == 0.5


def test_the_builders_gemma3_exporter_takes_the_mapped_config_and_uses_both_thetas(tmp_path):
    """The failure of the issue, then the fix, on the builder's own Gemma 3 class."""
    import onnx_ir as ir
    from onnxruntime_genai.models.builders.gemma import Gemma3Model

    config = tiny_gemma3()
    config.architectures = ["Gemma3ForCausalLM"]
    args = (ir.DataType.FLOAT, ir.DataType.INT4, "cpu", str(tmp_path), {})
    with pytest.raises(AttributeError, match="rope_local_base_freq"):
        Gemma3Model(config, *args)
    model = Gemma3Model(legacy_view(config), *args)
    # Global layers rotate with theta 1e6 (not the builder's fallback 10000), sliding ones with 1e4.
    caches = model.model.graph.initializers
    for name, theta in (("cos_cache_global", 1e6), ("cos_cache_local", 1e4)):
        inv_freq = 1.0 / theta ** (np.arange(0, model.head_size, 2) / model.head_size)
        expected = np.cos(np.outer(np.arange(256), inv_freq))
        assert np.allclose(caches[name].const_value.numpy(), expected, atol=1e-5), name


def test_embedding_modes_are_checked_against_the_model_and_reach_the_builder():
    assert resolve_embeddings("shared", tied=True) == "shared" and resolve_embeddings("int4", tied=False) == "int4"
    with pytest.raises(OnnxEmbeddingsError, match="'shared' needs a model whose embedding and output"):
        resolve_embeddings("shared", tied=False)
    assert embedding_options("int4") == {"int4_op_types_to_quantize": ["MatMul", "Gather"], "shared_embeddings": False}
    assert embedding_options("shared") == {"shared_embeddings": True, "int4_algo_config": "rtn"}
    assert embedding_options("float") == {}

    int4 = OnnxTargets().export_config("int4")
    assert int4.embeddings == "int4"  # the default: int4 stays smaller than Q8_0 on large vocabularies
    workflow = olive_workflow_config("/m", "/o", "/c", int4)
    assert workflow["passes"]["builder"]["extra_options"]["int4_op_types_to_quantize"] == ["MatMul", "Gather"]
    float_workflow = olive_workflow_config("/m", "/o", "/c", int4.model_copy(update={"embeddings": "float"}))
    assert "extra_options" not in float_workflow["passes"]["builder"]


def test_embeddings_knob_moves_only_the_int4_cache_key():
    targets, other = OnnxTargets(), OnnxTargets(embeddings="float")
    assert targets.export_config("int4") != other.export_config("int4")
    for precision in ("int8", "fp32"):  # their graphs do not depend on it: same key, nothing rebuilt
        assert targets.export_config(precision) == other.export_config(precision)
        assert targets.export_config(precision).embeddings == "float"
    with pytest.raises(ValueError, match="applies to precision 'int4' only, not 'fp32'"):
        OnnxExportConfig(precision="fp32", embeddings="int4")


def test_unknown_embedding_mode_is_a_config_error(tmp_path):
    from tasks.config import load_config
    from tests.helpers import write_config

    with pytest.raises(ConfigError, match="onnx.embeddings"):
        load_config(write_config(tmp_path / "c.yaml", {
            "name": "t", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"},
            "formats": {"onnx": {"embeddings": "int2"}}}))


def test_a_folder_without_chat_template_is_prompted_with_the_text_itself(tmp_path):
    import json

    from tasks.formats.onnx.runtime import chat_template, prompt_text

    class NoTemplating:  # GenAI's tokenizer raises "Empty chat template" here
        def apply_chat_template(self, *args, **kwargs):
            raise AssertionError("must not be asked")

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    assert chat_template(tmp_path) is None
    assert prompt_text(NoTemplating(), None, [{"role": "user", "content": "What is 7 times 8?"}]) == "What is 7 times 8?"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert chat_template(tmp_path) == "{{ messages }}"
    (tmp_path / "chat_template.jinja").write_text("{{ bos_token }}")
    assert chat_template(tmp_path) == "{{ bos_token }}"  # the separate file wins, as transformers writes it


def test_formats_that_refuse_take_the_architecture_and_their_config():
    import inspect

    from tasks.formats import get_format

    for name in ("gguf", "onnx"):
        assert list(inspect.signature(get_format(name).refusal).parameters) == ["architecture", "config"]


def test_a_template_less_prompt_gets_the_bos_its_tokenizer_puts_first(tmp_path):
    """GenAI's encode skips tokenizer.json's post-processor: Gemma 3 270M lost its BOS and answered '???'."""
    import json

    from tasks.formats.onnx.runtime import bos_text, prompt_text

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>"}))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"post_processor": {
        "type": "TemplateProcessing", "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2]}}}}))
    assert bos_text(tmp_path) == "<bos>"
    assert prompt_text(None, None, [{"role": "user", "content": "Hi"}], bos="<bos>") == "<bos>Hi"
    (tmp_path / "tokenizer.json").write_text(json.dumps({"post_processor": None}))
    assert bos_text(tmp_path) == ""  # a tokenizer that adds no BOS gets none
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "add_bos_token": True}))
    assert bos_text(tmp_path) == "<s>"
