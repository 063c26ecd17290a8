from pathlib import Path

import pytest

from tasks.config import load_config
from tasks.core.errors import ConfigError
from tasks.formats.gguf.config import DEFAULT_TYPES, GgufConfig
from tasks.formats.onnx.config import OnnxTargets
from tests.helpers import REPO, write_config

BASE = {"name": "t", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"}}


def test_every_shipped_config_validates():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert load_config(path).name


def test_all_problems_are_reported_at_once(tmp_path):
    bad = {**BASE, "colour": "red", "formats": {"gguf": {"types": ["Q4_K_M", "Q9_X"]}}, "evaluate": {"n_ctx": "big"}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", bad))
    text = str(info.value)
    assert len(info.value.problems) == 3
    assert "colour: unknown key" in text
    assert "Q9_X" in text and "Q4_K_M" in text.split("valid:")[1]  # lists the valid types
    assert "evaluate.n_ctx" in text and "'big'" in text


def test_each_format_section_problem_is_its_own_line_with_its_path(tmp_path):
    bad = {**BASE, "formats": {"gguf": {"types": ["Q9_X"], "typse": 1}, "onnx": {"precisions": ["int3"]}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", bad))
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert any(p.startswith("formats.gguf.types:") and "Q9_X" in p for p in problems)
    assert any(p.startswith("formats.gguf.typse: unknown key") for p in problems)
    assert any(p.startswith("formats.onnx.precisions.0:") and "'int3'" in p for p in problems)


def test_formats_default_to_gguf_and_onnx_each_with_its_own_defaults(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", BASE))
    assert list(config.formats) == ["gguf", "onnx"]
    assert isinstance(config.formats["gguf"], GgufConfig) and config.formats["gguf"].types == list(DEFAULT_TYPES)
    assert isinstance(config.formats["onnx"], OnnxTargets)


def test_a_list_of_format_names_takes_each_ones_defaults(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": ["gguf"]}))
    assert list(config.formats) == ["gguf"] and config.formats["gguf"] == GgufConfig()


def test_quant_types_are_normalised_and_repeats_or_imatrix_types_refused(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"gguf": {"types": ["q4_k_m"]}}}))
    assert config.formats["gguf"].types == ["Q4_K_M"]
    for types, message in ((["Q8_0", "q8_0"], "repeat"), ([{"type": "IQ2_XS", "imatrix": False}], "importance matrix")):
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"gguf": {"types": types}}}))


def test_include_merges_and_the_including_file_wins(tmp_path):
    write_config(tmp_path / "q.yaml", {"formats": {"gguf": {"types": ["Q8_0"], "threads": 1}}})
    config = load_config(write_config(tmp_path / "c.yaml", {
        **BASE, "include": ["q.yaml"], "formats": {"gguf": {"types": ["Q4_0"]}},
    }))
    assert config.formats["gguf"].types == ["Q4_0"] and config.formats["gguf"].threads == 1


def test_an_included_format_is_switched_off_with_null(tmp_path):
    write_config(tmp_path / "q.yaml", {"formats": {"gguf": {"types": ["Q8_0"]}, "onnx": {"precisions": ["int4"]}}})
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "include": ["q.yaml"], "formats": {"onnx": None}}))
    assert list(config.formats) == ["gguf"] and config.formats["gguf"].types == ["Q8_0"]


def test_gguf_source_needs_one_location(tmp_path):
    with pytest.raises(ConfigError, match="either `path`, or both"):
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "source": {"kind": "gguf", "package": "x"}}))


def test_missing_file_is_a_config_error():
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Path("/no/such/config.yaml"))


def test_misspelt_key_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'types'"):
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"gguf": {"typse": ["Q8_0"]}}}))


def test_the_old_top_level_sections_are_unknown_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "quantize": {"types": ["Q8_0"]}, "onnx": {}}))
    assert {p.split(":")[0] for p in info.value.problems} == {"quantize", "onnx"}


def test_tracking_artifacts_names_no_format_and_the_old_name_still_loads(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "tracking": {"artifacts": "copy"}}))
    assert config.tracking.artifacts == "copy"
    old = load_config(write_config(tmp_path / "old.yaml", {**BASE, "tracking": {"gguf_artifacts": "copy"}}))
    assert old.tracking.artifacts == "copy"
    assert "artifacts" in old.model_dump()["tracking"] and "gguf_artifacts" not in old.model_dump()["tracking"]
    with pytest.raises(ConfigError, match="tracking.artifacts"):
        load_config(write_config(tmp_path / "bad.yaml", {**BASE, "tracking": {"artifacts": "upload"}}))
