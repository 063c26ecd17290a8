"""The model facts every memory and time prediction starts from, read cheaply before any heavy work.

From a GGUF header (memory-mapped: nothing is dequantized) or an HF folder's config.json and safetensors
headers; plus the medium-tier shapes a plan prices for comparison, built from their published configs.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.store.gguf_header import read_gguf


class ModelShape(BaseModel):
    """What memory and time depend on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    architecture: str = Field("", description="GGUF/HF architecture name, e.g. 'qwen2' (empty: unknown).")
    n_weights: int = Field(gt=0, description="Every weight in the file (an untied output matrix counts).")
    n_layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    vocab: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    source_bytes: int = Field(0, ge=0, description="Bytes of the source file(s) as acquired (GGUF or safetensors).")
    source_quantized: bool = Field(False, description="The source is a quantized GGUF (dequantized by acquire).")

    @property
    def source_bits_per_weight(self) -> float:
        return 8 * self.source_bytes / self.n_weights

    def kv_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        """llama.cpp's f16 KV cache at n_ctx tokens: K and V, every layer, KV heads only (GQA)."""
        return 2 * self.n_layers * n_ctx * self.n_kv_heads * self.head_dim * bytes_per_value


def shape_from_gguf(path: Path, name: str | None = None) -> ModelShape:
    """Facts from a GGUF header; the tensors are only memory-mapped, never read."""
    reader = read_gguf(str(path))
    arch = _text(reader, "general.architecture") or "llama"
    heads = _int(reader, f"{arch}.attention.head_count") or 1
    hidden = _int(reader, f"{arch}.embedding_length") or 1
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return ModelShape(
        name=name or path.stem, architecture=arch,
        n_weights=sum(int(t.n_elements) for t in reader.tensors),
        n_layers=_int(reader, f"{arch}.block_count") or 1,
        hidden=hidden,
        vocab=len(tokens.data) if tokens is not None else 32000,
        n_kv_heads=_int(reader, f"{arch}.attention.head_count_kv") or heads,
        head_dim=_int(reader, f"{arch}.attention.key_length") or hidden // heads,
        source_bytes=path.stat().st_size,
        source_quantized=(_int(reader, "general.file_type") or 0) not in (0, 1, 32),  # f32, f16, bf16
    )


def shape_from_hf(folder: Path, name: str | None = None) -> ModelShape:
    """Facts from an HF folder: config.json and the safetensors headers (no weights read)."""
    from tasks.acquire import inspect  # tasks.acquire's package imports the plan: a top-level import would be circular

    config = json.loads((folder / "config.json").read_text())
    config = config.get("text_config", config)  # multimodal wrappers keep the language model inside
    weights = inspect.weight_files(folder, allow_pickle=False)
    heads = config.get("num_attention_heads", 1)
    hidden = config["hidden_size"]
    return ModelShape(
        name=name or folder.name, architecture=config.get("model_type", ""), n_weights=inspect.count_parameters(weights), n_layers=config["num_hidden_layers"],
        hidden=hidden, vocab=config["vocab_size"], n_kv_heads=config.get("num_key_value_heads", heads),
        head_dim=config.get("head_dim") or hidden // heads, source_bytes=sum(f.stat().st_size for f in weights),
    )


def dense_shape(name: str, *, n_layers: int, hidden: int, ffn: int, vocab: int, n_heads: int, n_kv_heads: int,
                tied: bool, source_bits_per_weight: float = 0.0) -> ModelShape:
    """A decoder's shape from its config numbers (attention, SwiGLU MLP, embeddings), for tiers not at hand."""
    head_dim = hidden // n_heads
    attention = 2 * hidden * hidden + 2 * hidden * n_kv_heads * head_dim
    per_layer = attention + 3 * hidden * ffn + 2 * hidden
    n_weights = n_layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden
    return ModelShape(name=name, architecture="qwen2", n_weights=n_weights, n_layers=n_layers, hidden=hidden, vocab=vocab,
                      n_kv_heads=n_kv_heads, head_dim=head_dim, source_bytes=int(n_weights * source_bits_per_weight / 8),
                      source_quantized=source_bits_per_weight < 16 and source_bits_per_weight > 0)


def medium_tier_shapes(source_bits_per_weight: float) -> list[ModelShape]:
    """The medium tier's ends, acquired the same way as the planned model (same bits per weight)."""
    return [
        # Qwen2.5-14B's config.json: 48 layers, hidden 5120, ffn 13824, 40 heads / 8 KV, vocab 152064, untied.
        dense_shape("medium 14B (Qwen2.5-14B shape)", n_layers=48, hidden=5120, ffn=13824, vocab=152064, n_heads=40,
                    n_kv_heads=8, tied=False, source_bits_per_weight=source_bits_per_weight),
        # A dense 30B at the tier's top (Qwen2.5-32B's width, 60 layers, ffn 25600: 28.9B weights).
        dense_shape("medium 30B (dense, 60 x 5120)", n_layers=60, hidden=5120, ffn=25600, vocab=152064, n_heads=40,
                    n_kv_heads=8, tied=False, source_bits_per_weight=source_bits_per_weight),
    ]


def _text(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode(errors="replace")


def _int(reader, key: str) -> int | None:
    field = reader.fields.get(key)
    return None if field is None else int(field.parts[field.data[0]][0])
