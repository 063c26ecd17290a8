"""Which ONNX Runtime GenAI variants a pipeline builds, and the knobs they share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.formats.onnx.export import EMBEDDINGS_HELP, AccuracyLevel, BlockSize, EmbeddingsMode, OnnxExportConfig
from tasks.serve.config import ServeConfig

OnnxPrecision = Literal["int4", "int8", "fp32", "fp16"]


class OnnxTargets(BaseModel):
    """The ONNX precisions to export, evaluate and package (one variant each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    precisions: list[OnnxPrecision] = Field(
        default_factory=lambda: ["int4", "int8", "fp32"], min_length=1,
        description="One ONNX variant per precision: int4/int8 weight-only RTN (MatMulNBits), fp32; "
        "fp16 needs execution_provider 'cuda'.",
    )
    execution_provider: Literal["cpu", "cuda"] = Field(
        "cpu", description="ONNX Runtime EP the graphs are built for; measurements always run on CPU.",
    )
    int4_block_size: BlockSize = Field(
        32, description="Quantization block size of int4 and int8 (16, 32, 64, 128 or 256).",
    )
    int4_accuracy_level: AccuracyLevel = Field(
        4, description="MatMulNBits compute type of int4 and int8: 1=fp32 2=fp16 3=bf16 4=int8 (fastest on CPU).",
    )
    embeddings: EmbeddingsMode = Field("int4", description=EMBEDDINGS_HELP)
    export_timeout_s: int = Field(3600, ge=10, description="An export still running after this is stopped.")
    smoke_prompt: str = Field(
        "What is the capital of France?",
        description="Asked of each packaged folder (greedy, chat template) to show that it serves.",
    )
    smoke_max_new_tokens: int = Field(32, ge=1, le=1024, description="Longest smoke-test answer, in tokens.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description=(
        "Serve each passing folder (onnxruntime-genai behind an OpenAI-compatible app), check its answers, load it."))

    @field_validator("precisions")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if duplicates := sorted({p for p in value if value.count(p) > 1}):
            raise ValueError(f"precisions lists {duplicates} more than once")
        return value

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> OnnxTargets:
        # Olive skips an fp16 build for the CPU EP and reports only "no output model": fail here.
        if "fp16" in self.precisions and self.execution_provider != "cuda":
            raise ValueError("precision 'fp16' needs execution_provider 'cuda'; on CPU use int4, int8 or fp32")
        return self

    def export_config(self, precision: str) -> OnnxExportConfig:
        """The export settings of one precision."""
        return OnnxExportConfig(
            precision=precision, execution_provider=self.execution_provider,
            int4_block_size=self.int4_block_size, int4_accuracy_level=self.int4_accuracy_level,
            # int8 and fp32 keep the builder's embedding: their cache keys do not move with this knob.
            embeddings=self.embeddings if precision == "int4" else "float",
        )
CONFIG = OnnxTargets
