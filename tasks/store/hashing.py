"""File hashing and sha256 manifests: the identity of every artefact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks.core.errors import CorruptArtifactError

_CHUNK = 8 * 1024 * 1024  # 8 MiB reads keep hashing near disk speed without much memory


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    """Stable hash of a JSON-able value (keys sorted), used for cache keys."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def build_manifest(folder: Path, *, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """Map every file under `folder` (relative posix path) to its sha256."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in exclude
    }


def verify_manifest(folder: Path, manifest: dict[str, str]) -> None:
    """Raise CorruptArtifactError naming the first file that is missing or altered."""
    for relative, expected in manifest.items():
        path = folder / relative
        if not path.is_file():
            raise CorruptArtifactError(
                f"{path} is missing from a stored artefact; delete {folder} and run again."
            )
        actual = sha256_file(path)
        if actual != expected:
            raise CorruptArtifactError(
                f"{path} has sha256 {actual[:16]}…, expected {expected[:16]}…: the file was altered "
                f"or truncated; delete {folder} and run again."
            )
