from pathlib import Path

import pytest

from tasks.config import load_config
from tasks.errors import ConfigError
from tests.conftest import REPO, write_config

BASE = {"name": "t", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"}}


def test_every_shipped_config_validates():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert load_config(path).name


def test_all_problems_are_reported_at_once(tmp_path):
    bad = {**BASE, "colour": "red", "quantize": {"types": ["Q4_K_M", "Q9_X"]}, "evaluate": {"n_ctx": "big"}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", bad))
    text = str(info.value)
    assert len(info.value.problems) == 3
    assert "colour: unknown key" in text
    assert "Q9_X" in text and "Q4_K_M" in text.split("valid:")[1]  # lists the valid types
    assert "evaluate.n_ctx" in text and "'big'" in text


def test_include_merges_and_the_including_file_wins(tmp_path):
    write_config(tmp_path / "q.yaml", {"quantize": {"types": ["Q8_0"], "threads": 1}})
    config = load_config(write_config(tmp_path / "c.yaml", {
        **BASE, "include": ["q.yaml"], "quantize": {"types": ["Q4_0"]},
    }))
    assert config.quantize.types == ["Q4_0"] and config.quantize.threads == 1


def test_gguf_source_needs_one_location(tmp_path):
    with pytest.raises(ConfigError, match="either `path`, or both"):
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "source": {"kind": "gguf", "package": "x"}}))


def test_missing_file_is_a_config_error():
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Path("/no/such/config.yaml"))


def test_misspelt_key_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'types'"):
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "quantize": {"typse": ["Q8_0"]}}))
