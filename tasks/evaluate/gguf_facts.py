"""Size facts of a GGUF file, read from its header (no weights loaded)."""

from __future__ import annotations

from pathlib import Path

from tasks.evaluate.bandwidth import weight_bytes_per_token


def gguf_size_facts(path: Path) -> dict[str, float]:
    """size_bytes (the file) and bits_per_weight as llama.cpp reports it (tensor bytes / weights)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    n_weights = sum(int(t.n_elements) for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    return {
        "size_bytes": path.stat().st_size,
        "bits_per_weight": tensor_bytes * 8 / n_weights,
        "n_weights": n_weights,
        "weight_bytes": weight_bytes_per_token(path),
    }
