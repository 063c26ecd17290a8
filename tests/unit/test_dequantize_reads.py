"""The transformers dequantize reads the GGUF through the plain-view parser and builds gguf-py's
tensor-name map once per (architecture, layers). In a subprocess: the patch changes the `gguf`
module of the process it runs in, and this test session's parity tests need gguf-py's own reader.
The values are checked by tests/integration/test_dequantize_stream.py (tensor for tensor)."""

import subprocess
import sys

CHECK = """
import gguf
from tasks.acquire.dequantize import _faster_gguf_reads
from tasks.store.gguf_header import plain_reader_class
original = gguf.get_tensor_name_map
_faster_gguf_reads()
assert gguf.GGUFReader is plain_reader_class() and issubclass(gguf.GGUFReader, gguf.gguf_reader.GGUFReader)
arch = gguf.MODEL_ARCH.LLAMA
first = gguf.get_tensor_name_map(arch, 30)
assert gguf.get_tensor_name_map(arch, 30) is first
assert first.mapping == original(arch, 30).mapping
assert gguf.get_tensor_name_map(arch, 2) is not first
print("ok")
"""


def test_the_dequantize_process_parses_once_per_file_and_maps_names_once():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
