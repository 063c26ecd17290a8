"""The recipe sentinel: read a quantized GGUF back and check that every tensor holds the type its recipe
asked for, so that a rule llama.cpp silently ignored (it has ignored `--tensor-type` before) fails the
variant instead of being measured and shipped under the wrong name.

What is "asked" follows llama.cpp's own type choice (src/llama-quant.cpp, `llama_tensor_get_type`, the
build named in tools.json) rather than "every tensor equals the base type", which llama.cpp never does:

1. Kept tensors. llama.cpp quantizes only tensors of 2+ dims whose name ends in `weight`, never norms
   (`_norm.weight`) nor a few small named ones (`KEPT_FRAGMENTS`). Those must keep their source type
   (checked against the f16 base when given) and must never be a quantized type.
2. Explicit overrides. `token_embedding_type` / `output_tensor_type` are applied as given (llama.cpp
   returns them before any fallback): the tensor has exactly that type. A `tensor_types` rule (first
   matching regex wins, as llama.cpp's loop breaks on the first match) goes through llama.cpp's shape
   fallback: the tensor has the asked type, or, when its rows do not divide into the type's blocks,
   llama.cpp's documented fallback for it (`FALLBACK`, then F16).
3. Everything else that llama.cpp quantizes, in a quantized file type: a quantized type no wider than
   Q8_0 (llama.cpp's per-tensor bumps for an ftype, e.g. Q6_K on attn_v/ffn_down/output in Q4_K_M, and
   the Q6_K -> Q8_0 shape fallback, never go wider), never F16/BF16/F32, except F16 where the rows fit
   no block of 32 (llama.cpp's last fallback). In an unquantized file type (F16, BF16, F32) these
   tensors have exactly that type.
4. The file type is really used: when some tensor of rule 3 can hold the ftype's base type
   (`BASE_TYPE`, e.g. Q4_K for Q4_K_M), at least one holds it (or its shape fallback). This catches a
   file built at another type than its name (all Q8_0 under a Q4_K_M label, a wrong ftype id).

Rules 3 and 4 are deliberately loose about *which* tensors llama.cpp bumps: those rules change between
llama.cpp builds and depend on the architecture and layer counts; the sentinel guards what a recipe
promises, not llama.cpp's heuristics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import UserError
from tasks.formats.gguf.llama_tools import same_build_as_binding, tools_dir, tools_record
from tasks.store.gguf_header import read_gguf
from tasks.store.versions import package_version

# llama_ftype_get_default_type: file type name -> the type of its bulk tensors.
BASE_TYPE = {
    "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q8_0": "Q8_0",
    "F16": "F16", "BF16": "BF16", "F32": "F32",
    "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS",
    "IQ2_M": "IQ2_S", "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
    "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
}
# tensor_type_fallback: a 256-block type on rows it cannot divide becomes this 32-block type.
FALLBACK = {
    **{t: "IQ4_NL" for t in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS")},
    **{t: "Q4_0" for t in ("Q2_K", "Q3_K", "TQ1_0", "TQ2_0")},
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
FLOAT_TYPES = ("F32", "F16", "BF16", "F64")
WIDEST = "Q8_0"  # the widest type llama.cpp's own per-tensor rules pick in a quantized file type
# tensor_allows_quantization: name fragments llama.cpp never quantizes (besides 1-D and non-weights).
KEPT_FRAGMENTS = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                  "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
                  "indexer.q_proj.weight", "position_embd.weight", "token_types.weight")


class TensorFact(BaseModel):
    """One tensor as read from a GGUF: what the sentinel needs, nothing more."""

    model_config = ConfigDict(frozen=True)
    name: str
    type: str = Field(description="ggml type name, e.g. Q4_K.")
    ncols: int = Field(description="Row length (ne[0]): what block sizes must divide.")
    n_dims: int


class Mismatch(BaseModel):
    name: str
    asked: str = Field(description="What the recipe and llama.cpp's rules allow, in words.")
    found: str


class RecipeMismatchError(UserError):
    """A quantized GGUF does not hold the tensor types its recipe asked for; fails that variant."""


def block_size(kind: str) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # gguf-py (numpy): when a file is checked, not when configs are read

    return GGML_QUANT_SIZES[GGMLQuantizationType[kind]][0]


def _bits(kind: str) -> float:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # gguf-py (numpy): when a file is checked, not when configs are read

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    return size * 8 / block


def shaped(kind: str, ncols: int) -> str:
    """The type llama.cpp writes when asked `kind` for rows of `ncols` (tensor_type_fallback)."""
    if kind in FLOAT_TYPES or ncols % block_size(kind) == 0:
        return kind
    fallback = FALLBACK.get(kind, kind)
    return fallback if ncols % block_size(fallback) == 0 else "F16"


def quantized_by_llama(fact: TensorFact) -> bool:
    """Whether llama-quantize touches this tensor at all (tensor_allows_quantization)."""
    name = fact.name
    return fact.n_dims >= 2 and name.endswith("weight") and not any(f in name for f in KEPT_FRAGMENTS)


def explicit_type(name: str, overrides: dict) -> tuple[str, bool] | None:
    """(asked type, whether llama.cpp's shape fallback applies) of an overridden tensor, else None."""
    if name == "token_embd.weight" and overrides.get("token_embedding_type"):
        return overrides["token_embedding_type"].upper(), False
    if name == "output.weight" and overrides.get("output_tensor_type"):
        return overrides["output_tensor_type"].upper(), False
    for pattern, kind in overrides.get("tensor_types", {}).items():
        if re.search(pattern, name):
            return kind.upper(), True  # first match wins, as in llama.cpp
    return None


def recipe_mismatches(tensors: list[TensorFact], *, ftype: str, overrides: dict | None = None,
                      source_types: dict[str, str] | None = None) -> list[Mismatch]:
    """Every tensor whose type breaks the rules of the module docstring (empty: the recipe holds)."""
    ftype = ftype.upper()
    if ftype not in BASE_TYPE:
        raise ValueError(f"recipe sentinel: unknown llama.cpp file type {ftype!r}; known: {', '.join(BASE_TYPE)}")
    base, overrides = BASE_TYPE[ftype], overrides or {}
    found: list[Mismatch] = []
    free: list[TensorFact] = []  # rule 3 tensors, for rule 4
    for t in tensors:
        if not quantized_by_llama(t):
            kept = (source_types or {}).get(t.name, t.type)
            if t.type != kept or t.type not in FLOAT_TYPES + ("I8", "I16", "I32", "I64"):
                found.append(Mismatch(name=t.name, asked=f"kept as in the source ({kept})", found=t.type))
        elif (explicit := explicit_type(t.name, overrides)) is not None:
            kind, falls_back = explicit
            want = shaped(kind, t.ncols) if falls_back else kind
            if t.type != want:
                found.append(Mismatch(name=t.name, asked=f"{want} (override {kind})", found=t.type))
        elif base in FLOAT_TYPES:
            if t.type != base:
                found.append(Mismatch(name=t.name, asked=base, found=t.type))
        else:
            free.append(t)
            if not _legit_free_type(t):
                asked = f"a quantized type no wider than {WIDEST} ({ftype})"
                found.append(Mismatch(name=t.name, asked=asked, found=t.type))
    return found + _base_type_missing(free, base, ftype)


def _legit_free_type(t: TensorFact) -> bool:
    if t.type in FLOAT_TYPES:
        return t.type == "F16" and t.ncols % 32 != 0  # llama.cpp's last fallback on unusual rows
    return _bits(t.type) <= _bits(WIDEST)


def _base_type_missing(free: list[TensorFact], base: str, ftype: str) -> list[Mismatch]:
    holders = [t for t in free if t.ncols % block_size(base) == 0]
    candidates = holders or free  # none can hold the base type: its shape fallback then
    if not candidates or any(t.type == shaped(base, t.ncols) for t in candidates):
        return []
    types = sorted({t.type for t in candidates})
    return [Mismatch(name=f"(all {len(candidates)} tensors quantized by llama.cpp's own rules)",
                     asked=f"at least one of type {base}, the bulk type of {ftype}", found=", ".join(types))]


def read_tensor_facts(path: Path) -> list[TensorFact]:
    return [TensorFact(name=t.name, type=t.tensor_type.name, ncols=int(t.shape[0]), n_dims=len(t.shape))
            for t in read_gguf(path).tensors]


def check_recipe(path: Path, *, ftype: str, overrides: dict | None = None, source: Path | None = None,
                 label: str | None = None) -> None:
    """Raise RecipeMismatchError naming every tensor whose type is not what was asked (see module doc)."""
    source_types = {t.name: t.type for t in read_tensor_facts(source)} if source is not None else None
    problems = recipe_mismatches(read_tensor_facts(path), ftype=ftype, overrides=overrides,
                                 source_types=source_types)
    if not problems:
        return
    lines = "\n".join(f"  - {p.name}: asked {p.asked}, found {p.found}" for p in problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise RecipeMismatchError(
        f"{label or ftype}: {path.name} does not hold the tensor types its recipe asked for "
        f"({len(problems)} tensor(s)):\n{lines}{more}\nllama.cpp may have ignored a rule; check the quantize log "
        f"beside the file ({path.with_suffix('.log').name}) and the llama.cpp build (llama-tools.json).")


def llama_build(*, plain: bool) -> str:
    """The llama.cpp build that wrote a variant, as a param beside its figures: tools.json's build line
    for llama-quantize's files, and for the binding's too when it is the wheel of that same compile."""
    if not plain or same_build_as_binding():
        record = tools_record() if not plain else json.loads((tools_dir() / "tools.json").read_text())
        # The compile's recipe too (its CPU flags: AMX left out): the same commit built otherwise runs
        # other kernels, and a figure that moves with it must show why.
        recipe = f", {record['recipe']}" if record.get("recipe") else ""
        return record.get("llama.cpp", "unknown") + recipe
    return f"llama-cpp-python {package_version('llama-cpp-python')} wheel (not the tools' build)"
