"""The importance matrix and tensor overrides on a tiny random-weight GGUF, with llama.cpp's real
llama-imatrix / llama-quantize (built by `make setup`): one imatrix per base shared by every type,
llama.cpp's imatrix metadata in each GGUF, and override rules applied to the tensors they name,
all read back with the gguf reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import tiny_build_inputs
from gguf import GGUFReader

from tasks.formats import get_format
from tasks.formats.base import BuildInputs
from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.facts import gguf_size_facts

CALIBRATION = {"chunks": 2, "n_ctx": 128}  # a few seconds on the tiny model


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir) -> BuildInputs:
    store = tmp_path_factory.mktemp("imatrix-store")
    return tiny_build_inputs(store, tiny_model_dir)


def _fields(path: Path) -> dict:
    return {name: field.contents() for name, field in GGUFReader(path).fields.items()}


def _tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def test_imatrix_is_computed_once_and_shared_by_every_type(inputs):
    config = GgufConfig(types=[{"type": "Q4_0", "imatrix": True}, {"type": "Q5_0", "imatrix": True}, "IQ4_NL"],
                        calibration=CALIBRATION, threads=1)
    fmt = get_format("gguf")
    assert fmt.variants(config) == ["Q4_0-imat", "Q5_0-imat", "IQ4_NL-imat"]  # IQ types get it automatically
    built = [fmt.build(label, inputs, config) for label in fmt.variants(config)]
    stored = [p for p in (inputs.store_root / "imatrix").iterdir() if not p.name.startswith(".")]
    assert len(stored) == 1  # one importance matrix for the three types
    assert len({b.params["imatrix.key"] for b in built}) == 1
    assert all(b.params["imatrix"] == "true" for b in built)
    for b in built:  # llama-quantize's own metadata, as llama.cpp records it
        fields = _fields(b.path)
        assert fields["quantize.imatrix.file"] == "Tiny-Llama-IMATRIX.gguf"  # no host path in a shipped file
        assert stored[0].joinpath("Tiny-Llama-IMATRIX.gguf").is_file()
        assert fields["quantize.imatrix.dataset"] == "cpython-stdlib-docstrings.txt"
        assert fields["quantize.imatrix.chunks_count"] == CALIBRATION["chunks"]
        assert fields["quantize.imatrix.entries_count"] == int(b.params["imatrix.entries"]) > 0
    again = fmt.build("Q4_0-imat", inputs, config)
    assert again.reused and again.key == built[0].key


def test_plain_type_keeps_the_binding_and_records_no_imatrix(inputs):
    config = GgufConfig(types=["Q4_0"], calibration=CALIBRATION, threads=1)
    built = get_format("gguf").build("Q4_0", inputs, config)
    assert built.params["imatrix"] == "false"
    assert not any(name.startswith("quantize.imatrix") for name in _fields(built.path))


def test_override_rules_apply_to_the_tensors_they_name(inputs):
    spec = {"type": "Q4_0", "name": "v8", "tensor_types": {r"blk\.\d+\.attn_v": "q8_0", r"ffn_down": "Q5_0"},
            "token_embedding_type": "q5_0"}
    config = GgufConfig(types=[spec], calibration=CALIBRATION, threads=1)
    (label,) = get_format("gguf").variants(config)
    assert label == "Q4_0-v8"
    built = get_format("gguf").build(label, inputs, config)
    types = _tensor_types(built.path)
    assert {types[n] for n in types if ".attn_v." in n} == {"Q8_0"}
    assert {types[n] for n in types if ".ffn_down." in n} == {"Q5_0"}
    assert {types[n] for n in types if ".attn_q." in n} == {"Q4_0"}  # unnamed tensors keep the type
    assert json.loads(built.params["tensor_types"]) == {r"blk\.\d+\.attn_v": "Q8_0", "ffn_down": "Q5_0"}
    assert types["token_embd.weight"] == "Q5_0"
    assert built.params["token_embedding_type"] == "Q5_0" and built.params["imatrix"] == "false"


def test_an_embedding_type_its_rows_cannot_hold_is_refused_before_llama_quantize_aborts(inputs):
    # llama-quantize applies --token-embedding-type without its shape fallback: Q6_K on 64-wide rows
    # crashed it ("double free or corruption"); slmforge now says what to pick instead.
    config = GgufConfig(types=[{"type": "Q4_0", "token_embedding_type": "q6_k"}], threads=1)
    (label,) = get_format("gguf").variants(config)
    with pytest.raises(ValueError, match="blocks of 256 values, but token_embd.weight has rows of 64"):
        get_format("gguf").build(label, inputs, config)


def test_budget_mix_meets_its_size_to_the_byte_and_reuses_its_sensitivity(inputs):
    plain = GgufConfig(types=["Q8_0", "Q4_0"], threads=1)
    q8, q4 = (get_format("gguf").build(t, inputs, plain) for t in ("Q8_0", "Q4_0"))
    sizes = [gguf_size_facts(b.path)["size_bytes"] for b in (q8, q4)]
    budget = (sizes[0] + sizes[1]) // 2 + 1  # an odd byte count between the two: no type lands on it
    # two types per group keep the table at 9 probes (one worker each)
    calibration = {**CALIBRATION, "n_ctx": 64, "sensitivity_chunks": 1, "sensitivity_types": ["Q8_0", "Q4_0"]}
    config = GgufConfig(types=[], calibration=calibration, threads=1,
                        targets=[{"max_size": budget}, {"bpw": 6.0}])
    labels = get_format("gguf").variants(config)
    assert labels == [f"MIX-{budget}B-imat", "MIX-6BPW-imat"]
    by_size, by_bpw = (get_format("gguf").build(label, inputs, config) for label in labels)
    assert gguf_size_facts(by_size.path)["size_bytes"] <= budget
    assert gguf_size_facts(by_bpw.path)["bits_per_weight"] <= 6.0
    tables = [p for p in (inputs.store_root / "gguf-sensitivity").iterdir() if not p.name.startswith(".")]
    assert len(tables) == 1  # measured once, used by both targets
    types = _tensor_types(by_size.path)  # the file holds the chosen mix, tensor by tensor
    for group in ("attn_q", "ffn_down", "token_embd"):
        chosen = by_size.params[f"mix.{group}"]
        assert {t for n, t in types.items() if n.endswith(f"{group}.weight")} == {chosen}


def test_relative_store_paths_work_with_the_tools(inputs, monkeypatch):
    # A config's store_dir is relative (.slmforge/store) and the tools run in their output folder:
    # llama-imatrix / llama-quantize could not open the base ("No such file") until paths were made absolute.
    monkeypatch.chdir(inputs.store_root.parent)
    relative = inputs.model_copy(update={
        "store_root": Path(inputs.store_root.name),
        "base": inputs.base.model_copy(update={"path": inputs.base.path.relative_to(inputs.store_root.parent)}),
    })
    config = GgufConfig(types=[{"type": "Q5_1", "imatrix": True}], calibration={**CALIBRATION, "chunks": 1}, threads=1)
    built = get_format("gguf").build("Q5_1-imat", relative, config)
    assert not built.reused and _fields(Path(inputs.store_root.parent, built.path))["quantize.imatrix.chunks_count"] == 1
