"""GGUF sources: find the file, check it is whole, dequantize it into an HF folder.

transformers can read a GGUF (`gguf_file=`) but refuses to `save_pretrained` the result, so the
weights are loaded, copied into a fresh model built from the same config and saved from there.
This runs in a subprocess: torch and the full-precision weights never enter the flow's memory.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

from tasks.acquire.assembled import assembled_gguf
from tasks.acquire.sources import GgufSource
from tasks.acquire.split import joined_gguf
from tasks.core.errors import CorruptArtifactError, SourceError
from tasks.hosts import hostlock
from tasks.plan.limits import MemoryLimit, gib, killed_by_signal_message, read_memory_limit
from tasks.plan.needs import Need, SAFETY, choose, dequantize_needs
from tasks.plan.shapes import shape_from_gguf
from tasks.store.gguf_header import read_gguf


def locate_gguf(source: GgufSource) -> Path:
    """The GGUF file a source names, or a SourceError saying how to fix the reference."""
    if source.path is not None:
        path = source.path.expanduser()
        if not path.is_file():
            raise SourceError(f"GGUF file {path} does not exist; check `source.path`.")
        return path
    if source.parts is not None:
        return joined_gguf(source.parts, source.file).path
    if source.assemble:
        return assembled_gguf(source.package, source.assemble, source.file)
    try:
        root = importlib.resources.files(source.package)
    except ModuleNotFoundError as exc:
        raise SourceError(
            f"Python package {source.package!r} is not installed; install it "
            f"(pip install {source.package.replace('_', '-')}) or use `source.path`."
        ) from exc
    path = Path(str(root / source.file))
    if not path.is_file():
        raise SourceError(f"Package {source.package!r} has no file {source.file!r} ({path}).")
    return path


def package_license(source: GgufSource) -> str | None:
    """Licence declared by the package that ships the GGUF, if any."""
    if source.package is None:
        return None
    try:
        meta = importlib.metadata.metadata(source.package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None
    return meta.get("License-Expression") or meta.get("License") or None


def read_gguf_facts(path: Path) -> dict:
    """Architecture and quantization type from the GGUF header; CorruptArtifactError if broken."""
    try:
        reader = read_gguf(str(path))
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise CorruptArtifactError(
            f"GGUF file {path} cannot be read ({type(exc).__name__}: {exc}); it is truncated or "
            "corrupt: download or copy it again."
        ) from exc
    return {
        "architecture": _field_text(reader, "general.architecture"),
        "file_type": _field_int(reader, "general.file_type"),
        "license": _field_text(reader, "general.license"),
        "n_tensors": len(reader.tensors),
    }


def _field_text(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode(errors="replace")


def _field_int(reader, key: str) -> int | None:
    field = reader.fields.get(key)
    return None if field is None else int(field.parts[field.data[0]][0])


def dequantize_strategy(gguf_path: Path, dtype: str, limit: MemoryLimit | None = None) -> tuple[Need, str | None]:
    """The first dequantize strategy that fits this process's memory (configured dtype through
    transformers; then streaming), and a sentence saying why when it is not the configured one.
    InsufficientMemoryError, before any work, when none fits."""
    limit = limit or read_memory_limit()
    options = dequantize_needs(shape_from_gguf(gguf_path), dtype)
    smallest = min(n.peak_bytes for n in options) * SAFETY
    chosen = choose(options, limit, remedy=(
        f"give this process at least {gib(smallest)} (a container's or cgroup's memory limit, or free memory on "
        "the host), or acquire a smaller model"))
    if chosen is options[0]:
        return chosen, None
    return chosen, (f"{options[0].strategy} would need {gib(options[0].peak_bytes)} and this process may use "
                    f"{limit.describe()}: took {chosen.strategy} ({gib(chosen.peak_bytes)}; {chosen.note})")


def dequantize_to_hf(gguf_path: Path, out_dir: Path, *, dtype: str, method: str = "transformers") -> None:
    """Write an HF folder (safetensors, config, tokenizer) for a GGUF, in a fresh process."""
    module = "tasks.acquire.dequantize" if method == "transformers" else "tasks.acquire.dequantize_stream"
    command = [sys.executable, "-m", module, str(gguf_path), str(out_dir), dtype]
    done = subprocess.run(command, capture_output=True, text=True, env=hostlock.child_env())
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        what = f"The dequantize of {gguf_path.name} ({method}, {dtype})"
        if killed := killed_by_signal_message(done.returncode, what, read_memory_limit()):
            raise SourceError(f"{killed}\nLast lines:\n{tail}")
        raise SourceError(f"Could not dequantize {gguf_path.name} with {method} ({dtype}):\n{tail}")
    facts = json.loads((out_dir / "config.json").read_text())
    if not facts.get("architectures"):
        raise SourceError(f"Dequantized {gguf_path.name} has no architecture in its config.")
