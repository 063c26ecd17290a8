"""GGUF headers read once per file version, through a plain view of gguf-py's mapping: the same
fields and tensors as gguf-py's own reader, and never a stale file's."""

import os

import numpy as np
from gguf import GGUFReader, GGUFWriter

from tasks.store import gguf_header
from tasks.store.gguf_header import read_gguf


def _write(path, n_tokens: int, block_count: int):
    writer = GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", block_count)
    writer.add_token_list([f"tok{i}" for i in range(n_tokens)])
    writer.add_token_scores([float(-i) for i in range(n_tokens)])
    writer.add_tensor("token_embd.weight", np.arange(n_tokens * 8, dtype=np.float32).reshape(n_tokens, 8))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_same_fields_and_tensors_as_gguf_py(tmp_path):
    path = _write(tmp_path / "m.gguf", n_tokens=3000, block_count=7)
    stock, plain = GGUFReader(str(path)), read_gguf(path)
    assert list(plain.fields) == list(stock.fields)
    for name, field in stock.fields.items():
        assert plain.fields[name].contents() == field.contents(), name
    assert [(t.name, t.tensor_type, list(t.shape), int(t.n_bytes), int(t.data_offset)) for t in plain.tensors] == \
           [(t.name, t.tensor_type, list(t.shape), int(t.n_bytes), int(t.data_offset)) for t in stock.tensors]
    assert np.array_equal(plain.tensors[0].data, stock.tensors[0].data)
    assert type(plain.tensors[0].data) is np.ndarray  # the plain view, not numpy's memmap subclass


def test_a_file_is_parsed_once_and_again_when_rewritten(tmp_path):
    gguf_header.forget_all()
    path = _write(tmp_path / "m.gguf", n_tokens=100, block_count=2)
    first = read_gguf(path)
    assert read_gguf(str(path)) is first
    # Rewritten in place (a new build at the same path): a new inode, size or mtime, parsed again.
    _write(tmp_path / "m.tmp", n_tokens=120, block_count=3)
    os.replace(tmp_path / "m.tmp", path)
    second = read_gguf(path)
    assert second is not first and second.fields["llama.block_count"].contents() == 3


def test_a_deleted_file_leaves_the_cache_at_the_next_read(tmp_path):
    gguf_header.forget_all()
    gone = _write(tmp_path / "gone.gguf", n_tokens=50, block_count=1)
    read_gguf(gone)
    gone.unlink()
    read_gguf(_write(tmp_path / "other.gguf", n_tokens=50, block_count=1))
    assert str(gone.resolve()) not in gguf_header._readers  # its mapping (and disk space) let go
