"""A small JSON file of per-host entries (the bandwidth probe, the host probe): read forgivingly,
written whole. A missing or torn file reads as empty: re-probing costs seconds, never a wrong figure."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def read_json_dict(cache_file: Path) -> dict:
    try:
        data = json.loads(cache_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomically(cache_file: Path, data: dict) -> None:
    # Temp file in the same folder, then rename: a reader sees the old file or the new one, never
    # half of one. Two writers racing can drop one's entry; that costs a re-probe, nothing worse.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, cache_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
