"""Publish a package folder to the Hugging Face Hub with huggingface_hub's own commit API.

One commit of `CommitOperationAdd` operations, one per file of the folder (the manifest too, so the
sha256 list travels with the files). The token comes from the environment (HF_TOKEN), is handed to
`HfApi` only, and never appears in the returned plan, a log line or an error message. `dry_run`
returns the exact operations without any network call: that is what the tests check offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.core.errors import UserError
from tasks.core.secrets import SECRET_ENV_NAMES, redact
from tasks.store.artifacts import MANIFEST_NAME
from tasks.store.hashing import sha256_file


class PlannedFile(BaseModel):
    path_in_repo: str
    size: int
    sha256: str


class PublishPlan(BaseModel):
    """What `publish` sends (or would send): the repo, the commit message, one entry per file."""

    repo_id: str
    commit_message: str
    files: list[PlannedFile]
    dry_run: bool
    commit_url: str | None = Field(None, description="Set after a real upload.")


def _files(package_dir: Path) -> list[Path]:
    if not (package_dir / MANIFEST_NAME).is_file():
        raise UserError(f"{package_dir} is not an slmforge package (no {MANIFEST_NAME}); "
                        "give a folder printed under `packages` by `slmforge run`")
    readme = package_dir / "README.md"
    if not readme.is_file() or not readme.read_text().startswith("---\n"):
        raise UserError(f"{readme} has no Hub metadata block; re-package with this slmforge version")
    return sorted(p for p in package_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def operations(package_dir: Path) -> list:
    """huggingface_hub CommitOperationAdd objects, one per file, paths relative to the package."""
    from huggingface_hub import CommitOperationAdd  # Hub client: only where the Hub is called

    return [CommitOperationAdd(path_in_repo=p.relative_to(package_dir).as_posix(), path_or_fileobj=str(p))
            for p in _files(package_dir)]


def publish(package_dir: Path, *, repo_id: str, dry_run: bool = False, private: bool = True,
            commit_message: str | None = None) -> PublishPlan:
    """Upload `package_dir` as one commit to model repo `repo_id` (created if missing, private by default)."""
    package_dir = package_dir.resolve()
    ops = operations(package_dir)
    message = commit_message or f"Upload {package_dir.name} with slmforge"
    plan = PublishPlan(repo_id=repo_id, commit_message=message, dry_run=dry_run, files=[
        PlannedFile(path_in_repo=op.path_in_repo, size=Path(op.path_or_fileobj).stat().st_size,
                    sha256=sha256_file(Path(op.path_or_fileobj))) for op in ops])
    if dry_run:
        return plan
    token = next((os.environ[n] for n in SECRET_ENV_NAMES if os.environ.get(n)), None)
    if token is None:
        raise UserError(f"no Hub token: set {SECRET_ENV_NAMES[0]} in the environment (it is never logged)")
    from huggingface_hub import HfApi  # Hub client: only where the Hub is called
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=ops, commit_message=message, repo_type="model")
    except HfHubHTTPError as exc:
        raise UserError(f"publishing to {repo_id} failed: {redact(str(exc), token)}") from None
    return plan.model_copy(update={"commit_url": str(info.commit_url)})
