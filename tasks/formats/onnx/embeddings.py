"""How an int4 ONNX graph holds the token-embedding matrix: the builder's choices, named and resolved.

onnxruntime-genai's model builder quantizes every MatMul at int4, the output matrix (lm_head)
included, but leaves the embedding Gather in the IO dtype (fp32 on CPU: 4 bytes a weight). On a
large vocabulary that makes int4 bigger than GGUF Q8_0 (Qwen2.5-Coder-1.5B, 151,936 x 1,536
embedding: the int4 folder was 1.93 GB, Q8_0 1.89 GB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from tasks.core.errors import UserError

EmbeddingsMode = Literal["float", "int4", "shared"]
EMBEDDINGS_HELP = (
    "int4 only: how the token-embedding matrix is stored (the output matrix is int4 in every mode). "
    "'int4' (default): quantized like the MatMuls (GatherBlockQuantized, same block size); on "
    "SmolLM2-135M it halved the folder (203 -> 108 MB, GGUF Q8_0: 145 MB) at no measurable quality cost "
    "(KLD 0.304 -> 0.303, 2 chunks). 'shared': a model with tied embeddings reads the output matrix's int4 "
    "copy (one matrix; refused for untied models): 90 MB but KLD 0.527 on SmolLM2, the cost of the "
    "builder's 'rtn' quantizer that sharing needs ('rtn' unshared: 0.505). 'float': the builder's default, "
    "in the IO dtype (fp32 on CPU)."
)


class OnnxEmbeddingsError(UserError):
    """The embedding mode asked for cannot apply to this model."""


def resolve_embeddings(mode: str, *, tied: bool) -> str:
    """`mode`, checked against the model: 'shared' needs tied embedding and output matrices."""
    if mode == "shared" and not tied:
        raise OnnxEmbeddingsError(
            "onnx.embeddings 'shared' needs a model whose embedding and output matrices are one "
            "(tie_word_embeddings true); this model has two different ones. Use 'int4' (each quantized)."
        )
    return mode


def embedding_options(mode: str) -> dict[str, Any]:
    """The model builder's options for a resolved embedding mode (see EMBEDDINGS_HELP)."""
    if mode == "int4":
        # ORT's weight-only quantizer turns a Gather on a constant into GatherBlockQuantized (4 bits only).
        return {"int4_op_types_to_quantize": ["MatMul", "Gather"], "shared_embeddings": False}
    if mode == "shared":
        # The builder shares the int4 lm_head with the Gather only under the 'rtn' algorithm, whose
        # weight names it knows ('default' is the same round-to-nearest, named differently).
        return {"shared_embeddings": True, "int4_algo_config": "rtn"}
    return {}


def ties_embeddings(hf_dir: Path) -> bool:
    """Whether the model's embedding and output matrices are one (transformers' view of its config,
    class defaults included: many configs omit the key)."""
    from transformers import AutoConfig  # transformers: only where a model config is read

    config = AutoConfig.from_pretrained(hf_dir)
    return bool(getattr(config.get_text_config(), "tie_word_embeddings", False))


def install_olive_embedding_fix() -> None:
    """Let the builder's own `make_embedding` run again under Olive (export child process only).

    Olive 0.13's ModelBuilder pass replaces the builder's `make_embedding` with its own, written for
    pre-quantized (GPTQ/AWQ) checkpoints, which lacks the builder's shared-embedding branches: under
    Olive, `shared_embeddings` silently did nothing (a tied tiny Gemma 3 kept its fp32 embedding).
    Olive's version stays for pre-quantized embeddings, the only case it was written for."""
    from olive.passes.onnx import model_builder as olive_pass  # Olive: heavy, only in the ONNX export
    from onnxruntime_genai.models.builders.base import Model

    builders_own, olives = Model.make_embedding, olive_pass.patched_make_embedding

    def make_embedding(self, embedding):
        return olives(self, embedding) if hasattr(embedding, "qweight") else builders_own(self, embedding)

    olive_pass.patched_make_embedding = make_embedding  # what the pass installs when it runs
