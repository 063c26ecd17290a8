"""Subprocess entry: `python -m tasks.acquire.dequantize GGUF OUT_DIR DTYPE`."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path


def main(gguf_path: Path, out_dir: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _faster_gguf_reads()
    dtype = getattr(torch, dtype_name)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    config = loaded.config
    # The saved weights are dequantized: a leftover quantization_config would make
    # every later loader (and llama.cpp's converter) expect GGUF-packed tensors.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _drop_quantization_config(out_dir / "config.json")


def _faster_gguf_reads() -> None:
    """transformers (5.23, pinned) reads a GGUF through gguf-py three times per load and builds
    gguf-py's tensor-name map once per submodule (397 times for SmolLM2-135M): 30 s of a 135M
    model's acquire. Both calls take their names from the `gguf` module when they run, so this
    process gives them the same parser through a plain ndarray view (tasks.store.gguf_header:
    the values are identical) and a map built once per (architecture, layers); the map is a pure
    function of those two and is only read."""
    import gguf

    from tasks.store.gguf_header import plain_reader_class

    gguf.GGUFReader = plain_reader_class()
    gguf.get_tensor_name_map = functools.cache(gguf.get_tensor_name_map)


def _drop_quantization_config(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
