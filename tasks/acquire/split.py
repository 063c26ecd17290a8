"""GGUFs split over registry packages (PyPI's file-size limit): one part per installed distribution,
joined in order once into the user cache, checked against the whole file's sha256 on every use.

Parts are found through each distribution's installed file list (importlib.metadata), not by
importing it: a data package has no code worth running. pip's RECORD holds each part's sha256 as
installed, so a mismatch of the whole file can name the part that changed since.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from tasks.acquire.assembled import assembled_dir
from tasks.acquire.sources import SplitParts
from tasks.core.errors import CorruptArtifactError, SourceError
from tasks.store.hashing import sha256_file

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Part:
    """One installed part: where it is and what pip recorded for it."""

    number: int
    distribution: str
    path: Path
    recorded_sha256: str | None  # from the distribution's RECORD, when pip wrote one


@dataclass(frozen=True)
class JoinedFile:
    path: Path
    sha256: str
    reused: bool


def split_cache_dir() -> Path:
    """Joined files live apart from the package-assembled ones: keyed by their sha256."""
    return assembled_dir() / "split"


def joined_gguf(parts: SplitParts, file: str, *, cache_dir: Path | None = None,
                search_path: list[str] | None = None) -> JoinedFile:
    """The whole file, joined once under a lock, written to a temporary name then renamed, and
    verified (sha256) whether joined now or reused. `search_path`: where installed distributions
    are looked for (default sys.path)."""
    target = (cache_dir or split_cache_dir()) / parts.sha256 / file
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two runs at once: one joins, the other reuses
        if target.exists():
            found = sha256_file(target)
            if found == parts.sha256:
                return JoinedFile(target, found, reused=True)
            target.unlink()  # a cached copy altered since: join it again from the parts
        located = locate_parts(parts, search_path=search_path)
        found = _join(located, target)
        if found != parts.sha256:
            target.unlink()
            raise CorruptArtifactError(_mismatch_message(parts, located, found))
    return JoinedFile(target, found, reused=False)


def locate_parts(parts: SplitParts, *, search_path: list[str] | None = None) -> list[Part]:
    """Every part's file, in join order; SourceError naming each missing part and how to install it."""
    located, problems = [], []
    for number, name in parts.members():
        try:
            located.append(_locate_one(parts, number, name, search_path))
        except SourceError as exc:
            problems.append(str(exc))
    if problems:
        if len(problems) > 4:  # a fresh install lacks all 22: the first few and the count say it
            problems = [*problems[:3], f"... and {len(problems) - 3} more of the {len(parts.members())} parts"]
        install = f"\nInstall every part with: {parts.install}" if parts.install else ""
        raise SourceError("The GGUF split over packages cannot be joined:\n  - " + "\n  - ".join(problems) + install)
    total = sum(part.path.stat().st_size for part in located)
    if parts.size is not None and total != parts.size:
        sizes = ", ".join(f"{p.distribution}: {p.path.stat().st_size:,}" for p in located)
        raise CorruptArtifactError(
            f"The {len(located)} parts add up to {total:,} bytes, expected {parts.size:,} "
            f"(a part is missing, truncated or of another version): {sizes}. Reinstall the parts"
            + (f" ({parts.install})." if parts.install else ".")
        )
    return located


def _locate_one(parts: SplitParts, number: int, name: str, search_path: list[str] | None) -> Part:
    member = parts.member.format(n=number)
    pin = f"=={parts.version}" if parts.version else ""
    found = list(importlib.metadata.Distribution.discover(name=name, path=search_path or sys.path))
    if not found:
        raise SourceError(f"part {number}: package {name!r} is not installed (pip install {name}{pin})")
    dist = found[0]
    if parts.version and dist.version != parts.version:
        raise SourceError(f"part {number}: package {name!r} is version {dist.version}, the sha256 is that of "
                          f"{parts.version} (pip install {name}{pin})")
    recorded = next((f for f in dist.files or [] if f.as_posix() == member), None)
    path = Path(str(dist.locate_file(member)))
    # Listed in the package's own RECORD, when it has one: a path resolved beside it may be another's.
    if (dist.files is not None and recorded is None) or not path.is_file():
        listed = sorted(f.as_posix() for f in dist.files or [] if not f.as_posix().endswith((".py", ".pyc")))
        raise SourceError(f"part {number}: package {name!r} has no file {member!r} (it has {listed[:5]}); "
                          "check `source.parts.member`")
    recorded_sha = None
    if recorded is not None and recorded.hash is not None and recorded.hash.mode == "sha256":
        recorded_sha = base64.urlsafe_b64decode(recorded.hash.value + "==").hex()
    return Part(number, name, path, recorded_sha)


def _join(located: list[Part], target: Path) -> str:
    """Concatenate the parts into a temporary file beside `target`, hashing as it goes; rename."""
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in located:
                with part.path.open("rb") as source:
                    while block := source.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 is for the half-written file, not the cached one
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _mismatch_message(parts: SplitParts, located: list[Part], found: str) -> str:
    changed = [p for p in located if p.recorded_sha256 and sha256_file(p.path) != p.recorded_sha256]
    reinstall = parts.install or "pip install --force-reinstall " + " ".join(p.distribution for p in located)
    if changed:
        names = ", ".join(f"part {p.number} ({p.distribution}: {p.path})" for p in changed)
        return (f"The joined GGUF has sha256 {found}, expected {parts.sha256}: {names} no longer match what pip "
                f"installed (altered on disk). Reinstall: pip install --force-reinstall "
                + " ".join(p.distribution for p in changed))
    return (f"The joined GGUF has sha256 {found}, expected {parts.sha256}: every part is as installed, so a part "
            f"is of another version or the order is wrong (check `source.parts`). Reinstall: {reinstall}")
