"""Subprocess entry: `python -m tasks.acquire.dequantize_stream GGUF OUT_DIR DTYPE`, the low-memory dequantize.

transformers' GGUF loader holds every tensor dequantized to float32 and then the model twice (load, fresh
copy to save): about 10 bytes a weight at bf16, 15 GB for a 1.5B. This path reads the GGUF memory-mapped,
dequantizes one tensor at a time with gguf-py, undoes what llama.cpp's converter did to it (Llama's Q/K
row permutation), casts it and writes shards of at most STREAM_SHARD_BYTES: the peak is one shard plus the
largest tensor in float32. Config and tokenizer still come from transformers (they read only the header).
The same tensors as the transformers path, value for value (tests/integration/test_dequantize_stream.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tasks.plan.needs import STREAMABLE_ARCHITECTURES
from tasks.store.gguf_header import read_gguf

# The shard files' size on disk: it shapes the output (how many files, which tensors in each), so it
# lives here, in the module whose code identity keys that output (not in the planner, which is not keyed).
STREAM_SHARD_BYTES = 512 * 2**20

# llama.cpp's converter permutes the Q and K rows of these architectures (LlamaModel.permute); qwen2
# stores them as in the HF checkpoint.
PERMUTED_QK = {"llama", "mistral"}


def main(gguf_path: Path, out_dir: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if config.model_type not in STREAMABLE_ARCHITECTURES:
        raise SystemExit(f"streaming dequantize does not support {config.model_type!r} (supported: "
                         f"{', '.join(sorted(STREAMABLE_ARCHITECTURES))}); give the step more memory for the transformers path")
    dtype = getattr(torch, dtype_name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    wanted = {k: v.shape for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        wanted.pop("lm_head.weight", None)  # tied: saved once, as the embedding (save_pretrained does the same)
    reader = read_gguf(str(gguf_path))
    by_name = {t.name: t for t in reader.tensors}
    mapping = _hf_to_gguf_names(reader, list(wanted), config)
    shards = _plan_shards(wanted, torch.empty(0, dtype=dtype).element_size())
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(gguf_path, os.O_RDONLY)
    element = torch.empty(0, dtype=dtype).element_size()
    weight_map = {}
    for index, names in enumerate(shards, start=1):
        file = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        with (out_dir / file).open("wb") as sink:
            _write_header(sink, {n: wanted[n] for n in names}, dtype_name, element)
            for hf_name in names:
                tensor = _dequantized(fd, by_name[mapping[hf_name]], tuple(wanted[hf_name]), dtype)
                sink.write(memoryview(_undo_converter(hf_name, tensor, config).view(-1).view(torch.uint8).numpy()))
                del tensor
                weight_map[hf_name] = file
    os.close(fd)
    total = sum(_numel(s) for s in wanted.values()) * element
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.dtype = dtype
    config.save_pretrained(out_dir)
    GenerationConfig.from_model_config(config).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)


SAFETENSORS_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
ROWS_BYTES = 32 * 2**20  # quantized bytes dequantized at once: bounds gguf-py's float32 intermediates


def _write_header(sink, shapes: dict, dtype_name: str, element: int) -> None:
    """The safetensors header (8-byte little-endian length, JSON, space padding to 8 bytes): the offsets
    are known from the shapes, so every tensor can follow as soon as it is dequantized."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = _numel(shape) * element
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype_name], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    sink.write(len(text).to_bytes(8, "little") + text)


def _dequantized(fd: int, tensor, shape: tuple, dtype):
    """One tensor at the target dtype, dequantized a block of rows at a time into its final buffer."""
    import torch
    from gguf import dequantize

    raw = _read(fd, tensor)
    out = torch.empty(shape, dtype=dtype)
    flat_out = out.view(raw.shape[0], -1) if raw.ndim > 1 else out.view(1, -1)
    rows = raw.reshape(flat_out.shape[0], -1) if raw.ndim > 1 else raw.reshape(1, -1)
    step = max(1, ROWS_BYTES // max(rows.shape[1] * rows.itemsize, 1))
    for start in range(0, rows.shape[0], step):
        block = dequantize(rows[start:start + step], tensor.tensor_type)
        flat_out[start:start + step] = torch.from_numpy(block.reshape(flat_out[start:start + step].shape))
    return out


def _read(fd: int, tensor):
    """One tensor's bytes read into private memory, then dropped from the page cache: through the reader's
    memory map every page touched would stay resident (and charged to the cgroup) until the end."""
    import numpy as np

    raw = os.pread(fd, int(tensor.n_bytes), int(tensor.data_offset))
    os.posix_fadvise(fd, int(tensor.data_offset), int(tensor.n_bytes), os.POSIX_FADV_DONTNEED)
    return np.frombuffer(raw, dtype=tensor.data.dtype).reshape(tensor.data.shape)


def _hf_to_gguf_names(reader, hf_names: list[str], config) -> dict[str, str]:
    """Each HF tensor name -> its GGUF name, through gguf-py's own table (the converter's)."""
    import gguf

    field = reader.fields["general.architecture"]
    arch_name = bytes(field.parts[field.data[0]]).decode()
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    table = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    present = {t.name for t in reader.tensors}
    out = {}
    for hf_name in hf_names:
        found = table.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None or found not in present:
            raise SystemExit(f"no GGUF tensor for {hf_name} (mapped to {found!r}); the file does not match "
                             f"its architecture {arch_name!r}")
        out[hf_name] = found
    return out


def _undo_converter(hf_name: str, values, config):
    """The inverse of llama.cpp's LlamaModel.permute on q_proj / k_proj rows (a torch tensor)."""
    if config.model_type not in PERMUTED_QK:
        return values
    heads = config.num_attention_heads
    if hf_name.endswith("self_attn.q_proj.weight"):
        return _unpermute(values, heads)
    if hf_name.endswith("self_attn.k_proj.weight"):
        return _unpermute(values, getattr(config, "num_key_value_heads", None) or heads)
    return values


def _unpermute(w, n_head: int):
    """permute() reshaped rows as (head, 2, half) and swapped the last two: swap them back."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()


def _plan_shards(shapes: dict, element_size: int) -> list[list[str]]:
    """Names grouped into shards of at most STREAM_SHARD_BYTES (a bigger tensor gets a shard of its own)."""
    shards, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = _numel(shape) * element_size
        if current and size + nbytes > STREAM_SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
