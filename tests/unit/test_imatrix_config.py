"""Importance-matrix config: labels, automatic imatrix for the types that need one, up-front errors,
(the calibration text and the tools' build: tests/integration/test_calibration_and_tools.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.quantize_tool import quantize_args


def test_labels_params_and_automatic_imatrix():
    config = GgufConfig(types=["Q4_K_M", {"type": "q4_k_m", "imatrix": True}, "IQ2_M", "IQ4_XS",
                               {"type": "IQ4_XS", "imatrix": False}])
    assert [r.label for r in config.recipes()] == ["Q4_K_M", "Q4_K_M-imat", "IQ2_M-imat", "IQ4_XS-imat", "IQ4_XS"]
    assert [r.params()["imatrix"] for r in config.recipes()] == ["false", "true", "true", "true", "false"]
    assert [r.label for r in GgufConfig(types=["Q6_K"], imatrix=True).recipes()] == ["Q6_K-imat"]


def test_a_type_that_needs_an_imatrix_fails_up_front_without_one():
    with pytest.raises(ValidationError, match="Q2_K_S needs an importance matrix"):
        GgufConfig(types=[{"type": "Q2_K_S", "imatrix": False}])


def test_overrides_are_checked_and_named():
    with pytest.raises(ValidationError, match="unknown ggml tensor type 'q9_k'"):
        GgufConfig(types=[{"type": "Q4_0", "tensor_types": {"attn_v": "q9_k"}}])
    with pytest.raises(ValidationError, match="not a regular expression"):
        GgufConfig(types=[{"type": "Q4_0", "tensor_types": {"attn_v(": "q8_0"}}])
    with pytest.raises(ValidationError, match="repeat"):  # same overrides twice: same label
        GgufConfig(types=[{"type": "Q4_0", "output_tensor_type": "q8_0"}] * 2)
    (recipe,) = GgufConfig(types=[{"type": "Q4_0", "tensor_types": {"attn_v": "q8_0"}}]).recipes()
    assert recipe.label.startswith("Q4_0-t") and recipe.params()["tensor_types"] == '{"attn_v": "Q8_0"}'


def test_quantize_command_line(tmp_path):
    args = quantize_args(tmp_path / "in.gguf", tmp_path / "out.gguf", "Q4_K_M", imatrix=tmp_path / "m.gguf",
                         threads=2, overrides={"tensor_types": {"attn_v": "Q8_0"}, "token_embedding_type": "Q6_K"})
    assert args == ["--imatrix", str(tmp_path / "m.gguf"), "--tensor-type", "attn_v=q8_0", "--token-embedding-type",
                    "q6_k", str(tmp_path / "in.gguf"), str(tmp_path / "out.gguf"), "Q4_K_M", "2"]


def test_the_evaluation_text_is_refused_as_calibration_text(tmp_path):
    from tests.helpers import write_config
    from tasks.config import load_config
    from tasks.core.errors import ConfigError

    text = tmp_path / "eval.txt"
    text.write_text("words " * 2000)
    base = {"name": "t", "model_name": "T", "source": {"kind": "local", "path": str(tmp_path)},
            "evaluate": {"corpus": {"kind": "file", "path": str(text)}}}
    bad = {**base, "formats": {"gguf": {"calibration": {"text": {"kind": "file", "path": str(text)}}}}}
    with pytest.raises(ConfigError, match="computed from the evaluation text"):
        load_config(write_config(tmp_path / "bad.yaml", bad))
    other = tmp_path / "calib.txt"
    other.write_text("other " * 2000)
    good = {**base, "formats": {"gguf": {"calibration": {"text": {"kind": "file", "path": str(other)}}}}}
    assert load_config(write_config(tmp_path / "good.yaml", good)).formats["gguf"].calibration.text.path == other




def test_an_evaluation_domains_text_is_refused_as_calibration_text(tmp_path):
    from tests.helpers import write_config
    from tasks.config import load_config
    from tasks.core.errors import ConfigError

    code = tmp_path / "code.txt"
    code.write_text("def f():\n    return 1\n" * 500)
    config = {"name": "t", "model_name": "T", "source": {"kind": "local", "path": str(tmp_path)},
              "evaluate": {"domains": {"code": {"text": {"kind": "file", "path": str(code)}}}},
              "formats": {"gguf": {"calibration": {"text": {"kind": "file", "path": str(code)}}}}}
    with pytest.raises(ConfigError, match="computed from the evaluation text"):
        load_config(write_config(tmp_path / "bad.yaml", config))
