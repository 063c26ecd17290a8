"""Content-addressed artefact store: a step's output folder is keyed by what produced it.

A key hashes the step name, the identities (sha256) of its inputs, its config and the tool
versions. Outputs are built in a temporary folder and renamed into place only when complete,
with a manifest of sha256 hashes; on reuse every hash is checked again, so a half-written or
altered artefact is never trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from tasks.core.errors import CorruptArtifactError
from tasks.store.hashing import build_manifest, sha256_json, verify_manifest

MANIFEST_NAME = "slmforge-manifest.json"


@dataclass(frozen=True)
class StoredArtifact:
    """A complete, verified output folder of one step."""

    path: Path
    key: str
    reused: bool
    manifest: dict[str, str]


def step_key(step: str, material: dict) -> str:
    """The cache key of a step: hash of its name and everything that determines its output."""
    return sha256_json({"step": step, **material})


def stored_step(
    root: Path, step: str, material: dict, build: Callable[[Path], None]
) -> StoredArtifact:
    """Return the verified output of `step` for `material`, building it only if needed.

    `build(tmp_dir)` writes the outputs into an empty temporary folder; nothing is visible
    under the final path until the build finished and the manifest is written.
    """
    key = step_key(step, material)
    final = root / step / key[:24]
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per key across processes: a second run at the same time waits, then reuses.
    with FileLock(final.parent / f".lock-{key[:24]}"):
        return _build_or_reuse(final, key, material, build)


def _build_or_reuse(final: Path, key: str, material: dict, build: Callable[[Path], None]) -> StoredArtifact:
    step_dir = final.parent
    reused = _load_verified(final)
    if reused is not None:
        return StoredArtifact(final, key, True, reused)
    if final.exists():
        shutil.rmtree(final)  # altered or incomplete: rebuild rather than trust it
    tmp = step_dir / f".tmp-{key[:12]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        manifest = build_manifest(tmp, exclude=frozenset({MANIFEST_NAME}))
        record = {"key": key, "material": material, "files": manifest}
        (tmp / MANIFEST_NAME).write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return StoredArtifact(final, key, False, manifest)


def _load_verified(folder: Path) -> dict[str, str] | None:
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        files = json.loads(manifest_path.read_text())["files"]
        verify_manifest(folder, files)
    except (CorruptArtifactError, ValueError, KeyError):
        return None
    return files


def clean_stale_temporaries(root: Path, *, older_than_s: float = 24 * 3600) -> int:
    """Remove temporary folders left by runs killed mid-step; returns how many.

    Only old ones: a young temporary folder may belong to a run still going on beside this one.
    """
    removed = 0
    for tmp in root.glob("*/.tmp-*"):
        if time.time() - tmp.stat().st_mtime > older_than_s:
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link when on the same filesystem: a multi-GB file is not duplicated."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
