"""slmforge's own code as a cache input: a fix in the code that makes an artefact or a figure
must invalidate what the old code stored, without hand-written marker strings."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path


@cache
def code_identity(*modules: str) -> str:
    """sha256 of the source of `modules` (a package counts all its .py files), short hex.

    Only the modules that shape an output are named by its step, so an edit elsewhere (the CLI,
    the README) keeps the store warm.
    """
    digest = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"code_identity: module {name!r} not found")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
