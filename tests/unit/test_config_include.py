"""Composition with `include:`: a section that names its `kind` replaces the included one."""

import pytest

from tasks.acquire.sources import GgufSource, LocalSource
from tasks.config import deep_merge, read_config_file, load_config
from tasks.core.errors import ConfigError
from tests.helpers import REPO, write_config

DEFAULT = REPO / "configs" / "default.yaml"


def test_a_gguf_source_by_path_replaces_the_included_package_source(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {
        "include": [str(DEFAULT)], "source": {"kind": "gguf", "path": "/x.gguf"},
    }))
    assert config.source == GgufSource(kind="gguf", path="/x.gguf")
    assert config.name == "smollm2-135m-default"  # the rest of the included file still applies


def test_a_source_of_another_kind_replaces_the_included_one(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml", {
        "include": [str(DEFAULT)], "source": {"kind": "local", "path": "/models/m"},
    }))
    assert isinstance(config.source, LocalSource) and str(config.source.path) == "/models/m"


def test_a_nested_section_with_a_kind_is_replaced_too(tmp_path):
    write_config(tmp_path / "hub.yaml", {
        "include": [str(DEFAULT)],
        "evaluate": {"corpus": {"kind": "hub", "dataset": "Salesforce/wikitext", "config_name": "wikitext-2-raw-v1"}},
    })
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("text " * 100)
    config = load_config(write_config(tmp_path / "c.yaml", {
        "include": ["hub.yaml"], "evaluate": {"corpus": {"kind": "file", "path": str(corpus)}},
    }))
    assert config.evaluate.corpus.kind == "file" and config.evaluate.corpus.path == corpus
    assert config.evaluate.n_ctx == 512  # evaluate itself names no kind: still merged


def test_a_section_without_kind_still_merges_into_the_included_one():
    base = {"source": {"kind": "hub", "repo_id": "org/m", "revision": "main"}, "a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"source": {"revision": "abc"}, "a": {"c": 3}})
    assert merged == {"source": {"kind": "hub", "repo_id": "org/m", "revision": "abc"}, "a": {"b": 1, "c": 3}}
    assert base["a"] == {"b": 1, "c": 2}  # inputs untouched


def test_include_may_name_a_single_file(tmp_path):
    write_config(tmp_path / "q.yaml", {"quantize": {"types": ["Q8_0"]}})
    assert read_config_file(write_config(tmp_path / "c.yaml", {"include": "q.yaml"}))["quantize"] == {"types": ["Q8_0"]}


def test_include_of_the_wrong_type_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="include: must be a file name or a list"):
        read_config_file(write_config(tmp_path / "c.yaml", {"include": {"q.yaml": 1}}))
