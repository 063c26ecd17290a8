"""The `formats.gguf` section: which llama.cpp quant types to make from the f16 base.

Parsing it loads no runtime: the type names are a static table here, checked against the
installed llama-cpp-python by `slmforge validate` and by a unit test.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.formats.gguf.budget import BudgetTarget
from tasks.formats.gguf.calibration import CalibrationConfig
from tasks.formats.gguf.convert import ConvertConfig
from tasks.formats.gguf.variants import QuantRecipe, TypeSpec, resolve

from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.serve.config import ServeConfig

DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")
# llama.cpp's LLAMA_FTYPE_MOSTLY_* names (llama-cpp-python 0.3.36).
QUANT_TYPES = (
    "BF16", "F16", "IQ1_M", "IQ1_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ3_M", "IQ3_S", "IQ3_XS",
    "IQ3_XXS", "IQ4_NL", "IQ4_XS", "MXFP4_MOE", "NVFP4", "Q1_0", "Q2_0", "Q2_K", "Q2_K_S", "Q3_K_L",
    "Q3_K_M", "Q3_K_S", "Q4_0", "Q4_1", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_1", "Q5_K_M", "Q5_K_S", "Q6_K",
    "Q8_0", "TQ1_0", "TQ2_0",
)
# llama-quantize refuses these without an importance matrix (llama-quant.cpp: "Missing importance
# matrix for tensor ... in a very low-bit quantization"): they always get one.
NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S")
# The other IQ types were designed with an importance matrix (llama.cpp's README): on unless
# `imatrix: false` is written on them.
PREFERS_IMATRIX = ("IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS", "IQ4_NL")


class PackageConfig(BaseModel):
    """What goes into each variant's deployable folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_ctx: int | None = Field(None, ge=256, description="Ollama context size (default: the model's).")
    ollama_template: str | None = Field(None, description="Ollama TEMPLATE to use instead of translating.")
    base_model: str | None = Field(None, description=(
        "Hub repo id of the base model, for the card's `base_model` (default: the repo of a hub source)."))


class GgufConfig(BaseModel):
    """GGUF variants: one per llama.cpp quant type, quantized from the f16 base."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    types: list[str | TypeSpec] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        description="llama.cpp types, e.g. Q4_K_M or {type: Q4_K_M, imatrix: true}; the base (f16) is always "
                    "evaluated too.",
    )
    imatrix: bool = Field(False, description="Default of every type's `imatrix` (the IQ types and Q2_K_S get one "
                                             "regardless).")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig,
                                           description="Text and settings of the importance matrix.")
    targets: list[BudgetTarget] = Field(default_factory=list, description="Budget mixes, one variant each: "
                                        "[{max_size: 100MB}, {bpw: 4.5}] (per-tensor types chosen from measured KLD).")
    threads: int | None = Field(None, ge=1, description="Quantization threads (default: all cores).")
    package: PackageConfig = Field(default_factory=PackageConfig, description="The Ollama folder of each variant.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description=(
        "Serve each passing variant (llama-cpp-python's OpenAI-compatible server), check its answers and load it."))
    deploy: DeployConfig = Field(default_factory=DeployConfig, description="Deployment files in each package.")

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str | TypeSpec]) -> list[str | TypeSpec]:
        names = [t if isinstance(t, str) else t.type for t in types]
        if unknown := [t for t in names if t.upper() not in QUANT_TYPES]:
            raise ValueError(f"unknown llama.cpp quant type(s) {unknown}; valid: {', '.join(QUANT_TYPES)}")
        return [t.upper() if isinstance(t, str) else t for t in types]

    @model_validator(mode="after")
    def _labels_unique(self) -> GgufConfig:
        labels = [r.label for r in self.recipes()] + [t.label() for t in self.targets]
        if repeated := sorted({x for x in labels if labels.count(x) > 1}):
            raise ValueError(f"quant types repeat: {repeated} (give override variants a distinct `name`)")
        return self

    def recipes(self) -> list[QuantRecipe]:
        """Every configured variant, resolved (imatrix on/off, overrides, label), in table order."""
        specs = [TypeSpec(type=t) if isinstance(t, str) else t for t in self.types]
        return [resolve(s, default_imatrix=self.imatrix, needs=NEEDS_IMATRIX, prefers=PREFERS_IMATRIX) for s in specs]

    def recipe(self, label: str) -> QuantRecipe | BudgetTarget:
        """The recipe or the budget target a variant label names."""
        named = {r.label: r for r in self.recipes()} | {t.label(): t for t in self.targets}
        return named[label]


CONFIG = GgufConfig
# The `convert:` section of a pipeline config: GGUF builds the reference base (tasks.formats.base.BuildsBase).
BASE_CONFIG = ConvertConfig
