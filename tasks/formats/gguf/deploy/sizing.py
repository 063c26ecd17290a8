"""Memory a served variant needs: measured peak RSS plus the KV cache at the configured context.

The KV cache is sized from the GGUF's own metadata (layers, KV heads, key and value widths) at
f16, llama.cpp's default cache type: n_ctx x n_layer x n_head_kv x (key_length + value_length) x 2 bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.store.gguf_header import read_gguf

MI = 1024 * 1024


class Sizing(BaseModel):
    """The figures a deployment's requests and limits come from."""

    n_ctx: int = Field(description="Context the server allocates.")
    n_layer: int
    n_head_kv: int
    key_length: int
    value_length: int
    kv_cache_bytes: int = Field(description="f16 KV cache at n_ctx for one sequence.")
    peak_rss_bytes: int = Field(description="Measured peak RSS of the offline measurement (includes its own context).")
    request_bytes: int = Field(description="Memory request: peak RSS + KV cache at n_ctx, rounded up to MiB.")
    limit_bytes: int = Field(description="Memory limit: the request times the headroom factor, rounded up to MiB.")
    cpu_request_m: int = Field(description="CPU request in millicores: the threads the figures were measured with.")


def gguf_attention_facts(path: Path) -> dict[str, int]:
    """n_layer, n_head_kv, key_length, value_length from a GGUF header (no weights read)."""
    reader = read_gguf(str(path))
    arch = _scalar(reader, "general.architecture")

    def field(name: str, default: int | None = None) -> int:
        value = _scalar(reader, f"{arch}.{name}")
        if value is None:
            if default is None:
                raise ValueError(f"{path.name}: GGUF metadata lacks {arch}.{name}; cannot size the KV cache")
            return default
        return int(value[0] if isinstance(value, list) else value)  # per-layer arrays: the first layer's

    n_head = field("attention.head_count")
    head_dim = field("embedding_length") // n_head
    return {"n_layer": field("block_count"), "n_head_kv": field("attention.head_count_kv", n_head),
            "key_length": field("attention.key_length", head_dim), "value_length": field("attention.value_length", head_dim)}


def _scalar(reader, key: str):
    found = reader.get_field(key)
    if found is None:
        return None
    value = found.contents()
    return value


def kv_cache_bytes(facts: dict[str, int], n_ctx: int, bytes_per_value: int = 2) -> int:
    return n_ctx * facts["n_layer"] * facts["n_head_kv"] * (facts["key_length"] + facts["value_length"]) * bytes_per_value


def size_deployment(gguf: Path, *, peak_rss_bytes: int, n_ctx: int, headroom: float, threads: int) -> Sizing:
    """Requests and limits from the measured peak RSS and the KV cache at `n_ctx`."""
    facts = gguf_attention_facts(gguf)
    kv = kv_cache_bytes(facts, n_ctx)
    request = math.ceil((peak_rss_bytes + kv) / MI) * MI
    return Sizing(n_ctx=n_ctx, **facts, kv_cache_bytes=kv, peak_rss_bytes=peak_rss_bytes, request_bytes=request,
                  limit_bytes=math.ceil(request * headroom / MI) * MI, cpu_request_m=1000 * threads)
