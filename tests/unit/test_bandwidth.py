import json

import numpy as np
import pytest

from tasks.evaluate import bandwidth
from tasks.evaluate.bandwidth import cached_read_bandwidth, decode_efficiency
from tasks.formats.gguf.facts import weight_bytes_per_token
from tasks.store import jsoncache


@pytest.fixture
def probes(monkeypatch):
    """A fake probe that counts its calls: the cache logic is tested, not the machine."""
    calls: list[int] = []

    def fake(threads: int) -> float:
        calls.append(threads)
        return 1e10 * threads

    monkeypatch.setattr(bandwidth, "measure_read_bandwidth", fake)
    return calls


def test_decode_efficiency_is_bytes_moved_over_bandwidth():
    # 100 tok/s x 100 MB/token = 10 GB/s of a 20 GB/s machine
    assert decode_efficiency(100.0, 1e8, 2e10) == pytest.approx(0.5)
    assert decode_efficiency(0.0, 1e8, 2e10) == 0.0


@pytest.mark.parametrize("args", [(100.0, 0, 2e10), (100.0, 1e8, 0), (-1.0, 1e8, 2e10)])
def test_decode_efficiency_rejects_meaningless_inputs(args):
    with pytest.raises(ValueError, match="decode_efficiency"):
        decode_efficiency(*args)


def test_probe_is_cached_per_hardware_and_threads(tmp_path, probes):
    cache = tmp_path / "cache" / "bandwidth.json"
    assert cached_read_bandwidth(cache, "hw-a", 2) == 2e10
    assert cached_read_bandwidth(cache, "hw-a", 2) == 2e10
    assert probes == [2]  # the second call read the file
    assert cached_read_bandwidth(cache, "hw-b", 2) == 2e10  # another machine: its own probe
    assert cached_read_bandwidth(cache, "hw-a", 1) == 1e10  # other threads: their own probe
    assert probes == [2, 2, 1]
    entries = json.loads(cache.read_text())
    assert set(entries) == {"hw-a/threads=2", "hw-b/threads=2", "hw-a/threads=1"}
    assert [p.name for p in cache.parent.iterdir()] == ["bandwidth.json"]  # no temp file left


def test_a_torn_cache_file_means_a_new_probe(tmp_path, probes):
    cache = tmp_path / "bandwidth.json"
    cache.write_text('{"hw-a/threads=2": {"bytes_per_s": 5')
    assert cached_read_bandwidth(cache, "hw-a", 2) == 2e10 and probes == [2]
    assert json.loads(cache.read_text())["hw-a/threads=2"]["bytes_per_s"] == 2e10


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, probes, monkeypatch):
    cache = tmp_path / "bandwidth.json"
    cached_read_bandwidth(cache, "hw-a", 2)
    before = cache.read_text()

    def broken_dump(data, handle, **kwargs):
        handle.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(jsoncache.json, "dump", broken_dump)  # where the cache is written
    with pytest.raises(OSError, match="disk full"):
        cached_read_bandwidth(cache, "hw-b", 2)
    assert cache.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bandwidth.json"]


def test_real_probe_returns_a_positive_rate():
    # A small buffer keeps this fast; it measures cache, not DRAM, and only the plumbing is checked.
    assert bandwidth.measure_read_bandwidth(2, buffer_bytes=4 * 2**20, repetitions=2) > 1e8


def _write_gguf(path, names):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    for name in names:
        writer.add_tensor(name, np.zeros((4, 8), dtype=np.float32))  # 128 bytes each
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_weight_bytes_leave_out_an_untied_embedding_table(tmp_path):
    tied = _write_gguf(tmp_path / "tied.gguf", ["token_embd.weight", "blk.0.ffn_up.weight"])
    untied = _write_gguf(tmp_path / "untied.gguf", ["token_embd.weight", "blk.0.ffn_up.weight", "output.weight"])
    assert weight_bytes_per_token(tied) == 256  # the table is the output projection: read in full
    assert weight_bytes_per_token(untied) == 256  # ffn + output; embedding rows only looked up
