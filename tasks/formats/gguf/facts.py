"""Size facts of a GGUF file, read from its header (no weights loaded)."""

from __future__ import annotations

from pathlib import Path

from tasks.store.gguf_header import read_gguf


def gguf_size_facts(path: Path) -> dict[str, float]:
    """size_bytes (the file) and bits_per_weight as llama.cpp reports it (tensor bytes / weights)."""
    reader = read_gguf(str(path))
    n_weights = sum(int(t.n_elements) for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    return {
        "size_bytes": path.stat().st_size,
        "bits_per_weight": tensor_bytes * 8 / n_weights,
        "n_weights": n_weights,
        "weight_bytes": weight_bytes_per_token(path),
    }


def weight_bytes_per_token(gguf_path: Path) -> int:
    """Bytes of weights read to decode one token: the sum of the GGUF's tensor bytes.

    One refinement: with untied embeddings (an `output.weight` tensor is present) the token
    embedding table is only looked up, one row per token, so it is left out; with tied
    embeddings (SmolLM2) the same table is the output projection and is read in full.
    """
    tensors = {t.name: int(t.n_bytes) for t in read_gguf(str(gguf_path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors.get("token_embd.weight", 0)
    return total
