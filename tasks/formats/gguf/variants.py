"""One GGUF variant's recipe: a llama.cpp type, with or without the importance matrix, with optional
per-tensor type overrides (llama-quantize's --tensor-type / --output-tensor-type /
--token-embedding-type), and the label that names it everywhere (tasks.core.naming.quant_label)."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.naming import quant_label

# ggml tensor types llama-quantize accepts in overrides (ggml_type_name, case-insensitive), gguf 0.19.
TENSOR_TYPES = (
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0",
)


def _tensor_type(value: str) -> str:
    if value.upper() not in TENSOR_TYPES:
        raise ValueError(f"unknown ggml tensor type {value!r}; valid: {', '.join(TENSOR_TYPES)}")
    return value.upper()


class TypeSpec(BaseModel):
    """A type as written in the config: `Q4_K_M` or `{type: Q4_K_M, imatrix: true, tensor_types: {...}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(description="llama.cpp file type, e.g. Q4_K_M or IQ4_XS.")
    imatrix: bool | None = Field(None, description="Use the importance matrix (default: the section's `imatrix`; "
                                                   "forced on for the types that need one).")
    tensor_types: dict[str, str] = Field(default_factory=dict, description="Regex on tensor names -> ggml type, "
                                         "as llama-quantize --tensor-type (first match wins), e.g. {attn_v: q8_0}.")
    output_tensor_type: str | None = Field(None, description="ggml type of output.weight (--output-tensor-type).")
    token_embedding_type: str | None = Field(None, description="ggml type of token_embd (--token-embedding-type).")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.]+$",
                             description="Label suffix of an override variant (default: a hash of the overrides).")

    @field_validator("tensor_types")
    @classmethod
    def _patterns(cls, rules: dict[str, str]) -> dict[str, str]:
        for pattern in rules:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"tensor_types pattern {pattern!r} is not a regular expression: {exc}") from exc
        return {pattern: _tensor_type(kind) for pattern, kind in rules.items()}

    @field_validator("output_tensor_type", "token_embedding_type")
    @classmethod
    def _one_type(cls, value: str | None) -> str | None:
        return None if value is None else _tensor_type(value)

    def overrides(self) -> dict:
        """The overrides that differ from llama-quantize's own choice (empty: none)."""
        found = {"tensor_types": self.tensor_types, "output_tensor_type": self.output_tensor_type,
                 "token_embedding_type": self.token_embedding_type}
        return {k: v for k, v in found.items() if v}


class QuantRecipe(BaseModel):
    """A resolved variant recipe: what the quantize step builds and the params its MLflow run records."""

    model_config = ConfigDict(frozen=True)
    label: str
    type: str
    imatrix: bool
    overrides: dict = Field(default_factory=dict)

    @property
    def plain(self) -> bool:
        """Built exactly as before this feature (the Python binding): no imatrix, no overrides."""
        return not self.imatrix and not self.overrides

    def params(self) -> dict[str, str]:
        """MLflow params of the variant's run."""
        params = {"imatrix": str(self.imatrix).lower(), "gguf_type": self.type}
        for name, value in self.overrides.items():
            # Patterns are regular expressions, which MLflow refuses in a key: the rules go as one JSON value.
            params[name] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        return params


def resolve(spec: TypeSpec, *, default_imatrix: bool, needs: tuple[str, ...], prefers: tuple[str, ...]) -> QuantRecipe:
    """The recipe of one config entry; a type that needs an imatrix but is told not to use one fails here."""
    kind = spec.type.upper()
    imatrix = spec.imatrix
    if imatrix is False and kind in needs:
        raise ValueError(f"{kind} needs an importance matrix (llama-quantize refuses it without one); "
                         f"remove `imatrix: false` from it or pick another type")
    if imatrix is None:
        imatrix = default_imatrix or kind in needs or kind in prefers
    overrides = spec.overrides()
    return QuantRecipe(label=quant_label(kind, imatrix=imatrix, overrides=overrides, name=spec.name),
                       type=kind, imatrix=imatrix, overrides=overrides)
