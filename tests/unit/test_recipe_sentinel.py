"""The recipe sentinel (tasks.formats.gguf.sentinel): llama.cpp's legitimate choices pass, an ignored
rule or a file of another type fails with the tensors named. Small GGUFs written with gguf-py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

from tasks.formats.gguf.sentinel import RecipeMismatchError, TensorFact, check_recipe, recipe_mismatches, shaped

WIDE = 256  # rows every type's blocks divide


def fact(name: str, kind: str, ncols: int = WIDE, n_dims: int = 2) -> TensorFact:
    return TensorFact(name=name, type=kind, ncols=ncols, n_dims=n_dims)


def q4_k_m_file(**changed: str) -> list[TensorFact]:
    """What llama.cpp writes for Q4_K_M on a one-layer model, with `changed` tensors replaced."""
    types = {"token_embd.weight": "Q4_K", "output.weight": "Q6_K", "output_norm.weight": "F32",
             "blk.0.attn_norm.weight": "F32", "blk.0.attn_q.weight": "Q4_K", "blk.0.attn_k.weight": "Q4_K",
             "blk.0.attn_v.weight": "Q6_K", "blk.0.ffn_down.weight": "Q6_K", "blk.0.ffn_up.weight": "Q4_K"}
    types.update({k.replace("__", "."): v for k, v in changed.items()})
    return [fact(n, t, n_dims=1 if "norm" in n else 2) for n, t in types.items()]


def names(problems) -> set[str]:
    return {p.name for p in problems}


def test_llama_cpps_own_choices_for_q4_k_m_pass():
    assert recipe_mismatches(q4_k_m_file(), ftype="Q4_K_M") == []


def test_a_tensor_left_in_f16_or_quantized_wider_than_q8_0_fails():
    assert names(recipe_mismatches(q4_k_m_file(blk__0__attn_q__weight="F16"), ftype="Q4_K_M")) == {
        "blk.0.attn_q.weight"}
    assert names(recipe_mismatches(q4_k_m_file(output__weight="F32"), ftype="Q4_K_M")) == {"output.weight"}


def test_f16_is_accepted_only_where_rows_fit_no_block_of_32():
    odd = [fact("blk.0.attn_q.weight", "F16", ncols=48), fact("blk.0.ffn_up.weight", "Q4_0", ncols=64)]
    assert recipe_mismatches(odd, ftype="Q4_0") == []


def test_a_file_of_another_type_than_its_name_fails():
    all_q8 = [fact(n, "Q8_0") for n in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_up.weight")]
    (problem,) = recipe_mismatches(all_q8, ftype="Q4_K_M")
    assert "Q4_K" in problem.asked and problem.found == "Q8_0"


def test_narrow_rows_expect_llama_cpps_shape_fallback():
    assert shaped("Q4_K", 64) == "Q5_0" and shaped("IQ4_XS", 64) == "IQ4_NL" and shaped("Q4_0", 48) == "F16"
    narrow = [fact("blk.0.attn_q.weight", "Q5_0", ncols=64), fact("blk.0.ffn_down.weight", "Q8_0", ncols=64)]
    assert recipe_mismatches(narrow, ftype="Q4_K_M") == []


def test_norms_stay_as_in_the_source_and_are_never_quantized():
    tensors = q4_k_m_file(output_norm__weight="Q8_0")
    assert names(recipe_mismatches(tensors, ftype="Q4_K_M")) == {"output_norm.weight"}
    changed = recipe_mismatches(q4_k_m_file(), ftype="Q4_K_M", source_types={"output_norm.weight": "F16"})
    assert names(changed) == {"output_norm.weight"}


def test_overrides_must_hold_exactly_first_matching_rule_wins():
    overrides = {"tensor_types": {r"attn_v": "Q8_0", r"attn_.": "Q5_K"}, "token_embedding_type": "Q8_0"}
    good = q4_k_m_file(blk__0__attn_v__weight="Q8_0", blk__0__attn_q__weight="Q5_K", blk__0__attn_k__weight="Q5_K",
                       token_embd__weight="Q8_0")
    assert recipe_mismatches(good, ftype="Q4_K_M", overrides=overrides) == []
    ignored = q4_k_m_file(blk__0__attn_q__weight="Q5_K", blk__0__attn_k__weight="Q5_K", token_embd__weight="Q8_0")
    (problem,) = recipe_mismatches(ignored, ftype="Q4_K_M", overrides=overrides)
    assert (problem.name, problem.found) == ("blk.0.attn_v.weight", "Q6_K") and "Q8_0" in problem.asked


def test_a_fully_overridden_mix_needs_no_tensor_of_the_base_type():
    overrides = {"tensor_types": {r"attn": "Q8_0", r"ffn": "Q4_0"}, "output_tensor_type": "Q8_0",
                 "token_embedding_type": "Q4_0"}
    mix = [fact("blk.0.attn_q.weight", "Q8_0"), fact("blk.0.ffn_up.weight", "Q4_0"), fact("output.weight", "Q8_0"),
           fact("token_embd.weight", "Q4_0")]
    assert recipe_mismatches(mix, ftype="Q4_K_M", overrides=overrides) == []


def test_unquantized_file_types_keep_every_weight_at_that_type():
    assert names(recipe_mismatches([fact("a.weight", "F16"), fact("b.weight", "Q8_0")], ftype="F16")) == {"b.weight"}


def test_an_unknown_file_type_is_refused():
    with pytest.raises(ValueError, match="unknown llama.cpp file type 'Q4_Z'"):
        recipe_mismatches([], ftype="q4_z")


def _write(path: Path, tensors: dict[str, str]) -> Path:
    writer = GGUFWriter(path, "llama")
    for name, kind in tensors.items():
        if kind == "F32":
            writer.add_tensor(name, np.zeros(WIDE, dtype=np.float32))
            continue
        qtype = GGMLQuantizationType[kind]
        block, size = GGML_QUANT_SIZES[qtype]
        writer.add_tensor(name, np.zeros((4, WIDE // block * size), dtype=np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_check_recipe_reads_the_file_and_names_asked_and_found(tmp_path):
    tensors = {"output_norm.weight": "F32", "blk.0.attn_q.weight": "Q4_0", "blk.0.attn_v.weight": "Q4_0",
               "token_embd.weight": "Q4_0"}
    good = _write(tmp_path / "good.gguf", {**tensors, "blk.0.attn_v.weight": "Q8_0"})
    bad = _write(tmp_path / "bad.gguf", tensors)
    overrides = {"tensor_types": {r"attn_v": "q8_0"}}
    check_recipe(good, ftype="Q4_0", overrides=overrides, source=None)
    with pytest.raises(RecipeMismatchError, match=r"Q4_0-v8.*\n  - blk\.0\.attn_v\.weight: asked Q8_0 "
                                                  r"\(override Q8_0\), found Q4_0"):
        check_recipe(bad, ftype="Q4_0", overrides=overrides, label="Q4_0-v8")
