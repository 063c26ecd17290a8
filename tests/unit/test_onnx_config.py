"""The ONNX targets in a pipeline config, and the Olive / GenAI / ORT version check."""

import json

import pytest

from tasks.config import load_config
from tasks.core.errors import ConfigError
from tasks.formats.onnx import export
from tasks.formats.onnx.config import OnnxTargets
from tasks.formats.onnx.export import check_onnx_versions
from tasks.validate import config_problems
from tests.helpers import write_config

BASE = {"name": "t", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"}}
GOOD = {"olive-ai": "0.13.0", "onnxruntime-genai": "0.14.1", "onnxruntime": "1.32.0", "requests": "2.32.3"}


def test_defaults_build_gguf_and_three_onnx_precisions(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", BASE))
    assert list(config.formats) == ["gguf", "onnx"]
    assert config.formats["onnx"].precisions == ["int4", "int8", "fp32"]


def test_onnx_section_defaults_to_three_precisions_and_shares_the_knobs(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": ["gguf", "onnx"]}))
    assert list(config.formats) == ["gguf", "onnx"]
    assert config.formats["onnx"] == OnnxTargets() and config.formats["onnx"].precisions == ["int4", "int8", "fp32"]
    int8 = config.formats["onnx"].export_config("int8")
    assert (int8.precision, int8.int4_block_size, int8.execution_provider) == ("int8", 32, "cpu")


def test_onnx_problems_are_all_reported_at_once(tmp_path):
    bad = {**BASE, "formats": {"gguf": {}, "tflite": {}, "onnx": {
        "precisions": ["int4", "int3", "int4"], "int4_block_size": 48, "int4_accuracy_level": 7, "colour": "red",
    }}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", bad))
    text = str(info.value)
    assert "unknown format 'tflite'" in text
    assert "onnx.precisions.1" in text and "'int3'" in text
    assert "onnx.int4_block_size: int4_block_size 48 is not one of (16, 32, 64, 128, 256)" in text
    assert "onnx.int4_accuracy_level" in text and "onnx.colour: unknown key" in text


@pytest.mark.parametrize(("onnx", "message"), [
    ({"precisions": ["fp16"]}, "precision 'fp16' needs execution_provider 'cuda'"),
    ({"precisions": ["int4", "int4"]}, "precisions lists ['int4'] more than once"),
    ({"precisions": []}, "at least 1 item"),
])
def test_onnx_targets_reject_what_cannot_be_built(tmp_path, onnx, message):
    with pytest.raises(ConfigError, match="onnx") as info:
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"onnx": onnx}}))
    assert message in str(info.value)


def test_fp16_is_accepted_for_cuda(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {
        **BASE, "formats": {"onnx": {"precisions": ["fp16"], "execution_provider": "cuda"}},
    }))
    assert config.formats["onnx"].export_config("fp16").execution_provider == "cuda"


def test_version_check_names_the_incompatible_versions():
    assert check_onnx_versions(GOOD) == []
    newer = check_onnx_versions({**GOOD, "onnxruntime-genai": "0.18.0"})
    assert len(newer) == 1 and "olive-ai 0.13.0" in newer[0] and "onnxruntime-genai 0.18.0" in newer[0]
    assert "0.14.1" in newer[0]  # says what to install
    middle = check_onnx_versions({**GOOD, "onnxruntime-genai": "0.15.2"})
    assert "onnxruntime-genai 0.15.2" in middle[0] and "parse_extra_options" in middle[0]
    old_ort = check_onnx_versions({**GOOD, "onnxruntime": "1.22.0"})
    assert old_ort == ["onnxruntime-genai 0.14.1 needs onnxruntime>=1.26.0, found 1.22.0"]
    missing = check_onnx_versions({**GOOD, "olive-ai": None})
    assert "not installed: olive-ai" in missing[0]


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return folder


def test_validate_reports_incompatible_onnx_versions_only_when_onnx_is_built(tmp_path, model_folder, monkeypatch):
    broken = {**GOOD, "onnxruntime-genai": "0.18.0"}
    monkeypatch.setattr(export, "_installed", broken.get)
    source = {"kind": "local", "path": str(model_folder)}
    both = {**BASE, "source": source, "formats": ["gguf", "onnx"]}
    _, problems = config_problems(write_config(tmp_path / "both.yaml", both))
    onnx_problems = [p for p in problems if p.startswith("formats: 'onnx'")]
    assert len(onnx_problems) == 1
    assert "olive-ai 0.13.0" in onnx_problems[0] and "onnxruntime-genai 0.18.0" in onnx_problems[0]

    _, problems = config_problems(write_config(tmp_path / "gguf.yaml", {**BASE, "source": source, "formats": ["gguf"]}))
    assert not [p for p in problems if "onnx" in p]


def test_installed_toolchain_is_compatible():
    assert check_onnx_versions() == []  # the pins in pyproject.toml


def test_validate_says_up_front_that_the_onnx_builder_cannot_take_a_local_gpt2(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    save_file({"wte.weight": torch.zeros(4, 2)}, folder / "model.safetensors")
    source = {"kind": "local", "path": str(folder)}
    _, problems = config_problems(write_config(tmp_path / "c.yaml", {**BASE, "source": source,
                                                                      "formats": ["gguf", "onnx"]}))
    refused = [p for p in problems if p.startswith("formats: onnx:")]
    assert len(refused) == 1 and "'GPT2LMHeadModel'" in refused[0] and "remove 'onnx'" in refused[0]
    _, problems = config_problems(write_config(tmp_path / "g.yaml", {**BASE, "source": source, "formats": ["gguf"]}))
    assert not [p for p in problems if p.startswith("formats:")]
