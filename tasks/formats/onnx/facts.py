"""Size facts of an ONNX Runtime GenAI folder, read from the graph (no weights loaded)."""

from __future__ import annotations

from pathlib import Path

WEIGHT_SUFFIXES = (".onnx", ".onnx.data")


def initializer_bytes(tensor) -> int:
    """Stored bytes of one initializer: its external-data length, or its inline payload."""
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    import numpy as np  # numpy: only on this path
    from onnx import helper

    return int(np.prod(tensor.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def decode_weight_bytes(model_path: Path) -> int:
    """Bytes of weights read to decode one token (the definition every format shares): all
    weight tensors, less the tables that are only looked up (a decode reads one row of those)."""
    import onnx  # onnx: only where an ONNX graph is read

    graph = onnx.load(str(model_path), load_external_data=False).graph
    sizes = {t.name: initializer_bytes(t) for t in graph.initializer}
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in sizes:
                consumers.setdefault(name, set()).add("lookup" if node.op_type == "Gather" and position == 0 else "read")
    lookup_only = [name for name, uses in consumers.items() if uses == {"lookup"}]
    return sum(sizes.values()) - sum(sizes[name] for name in lookup_only)


def onnx_size_facts(folder: Path, *, n_weights: int) -> dict[str, float]:
    """size_bytes: the whole folder (what ships). bits_per_weight: graph + weight files over the
    base's weight count, the ONNX analogue of llama.cpp's tensor bytes / weights."""
    files = [p for p in folder.iterdir() if p.is_file()]
    stored = sum(p.stat().st_size for p in files if p.name.endswith(WEIGHT_SUFFIXES))
    return {"size_bytes": sum(p.stat().st_size for p in files), "bits_per_weight": stored * 8 / n_weights,
            "n_weights": n_weights, "weight_bytes": decode_weight_bytes(folder / "model.onnx")}
