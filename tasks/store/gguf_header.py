"""A GGUF file's metadata and tensor table, parsed once per file version and shared by every reader.

gguf-py's GGUFReader is the parser (the format's reference reader; nothing here re-implements it),
but two of its costs add up in a run:

- It slices its `np.memmap` once per value, and numpy's memmap subclass makes every slice slow:
  a 49,152-token vocabulary took 4.8 s, 1.8 s when the same bytes are read through a plain
  ndarray view of the same mapping (the values are identical; tests/unit/test_gguf_header.py).
- One pipeline run asked for the same files about ten times (the plan's guard, size facts, bytes
  per token, KV sizing, ...): 115 s of a 170 s tiny-model run went to parsing headers.

So `read_gguf` parses through a plain view and keeps the last few files' readers, keyed by path and
the file's identity (inode, size, mtime): a rewritten file is parsed again. A reader maps its file;
entries whose file changed or vanished are dropped on every call, so a deleted store's space is not
held by this cache beyond the next read.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gguf import GGUFReader

KEEP = 4  # files: a run reads its reference and the variant at hand, over and over

_readers: OrderedDict[str, tuple[tuple[int, int, int], GGUFReader]] = OrderedDict()
_lock = threading.Lock()


def read_gguf(path: str | os.PathLike[str]) -> GGUFReader:
    """gguf-py's reader for `path` (fields and tensors; tensor data stays mapped, read on access)."""
    resolved = str(Path(path).resolve())
    identity = _identity(resolved)
    with _lock:
        _drop_stale()
        cached = _readers.get(resolved)
        if cached is not None and cached[0] == identity:
            _readers.move_to_end(resolved)
            return cached[1]
    reader = plain_reader_class()(resolved)
    with _lock:
        _readers[resolved] = (identity, reader)
        while len(_readers) > KEEP:
            _readers.popitem(last=False)
    return reader


def forget_all() -> None:
    """Drop every cached reader (and so its mapping)."""
    with _lock:
        _readers.clear()


def _identity(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _drop_stale() -> None:
    for path, (identity, _) in list(_readers.items()):
        try:
            current = _identity(path)
        except OSError:
            current = None
        if current != identity:
            del _readers[path]


@cache
def plain_reader_class():
    # gguf-py (numpy): imported where a GGUF file is read, not when configs are parsed.
    import numpy as np
    from gguf import GGUFReader

    class PlainViewReader(GGUFReader):
        """GGUFReader whose `data` (set once in its __init__) is a plain ndarray view of the memmap:
        the same bytes and mapping, without numpy's memmap bookkeeping on every slice (gguf is
        pinned in pyproject; the parity test guards the attribute this relies on)."""

        @property
        def data(self):
            return self._plain_data

        @data.setter
        def data(self, value):
            self._plain_data = value.view(np.ndarray)

    return PlainViewReader
