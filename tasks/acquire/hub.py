"""Hub sources: download a pinned snapshot with huggingface_hub, map its errors to ours."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.acquire.sources import HubSource
from tasks.core.errors import HubAccessError, TransientError
from tasks.core.secrets import redact


# Safe by default: configs, tokenizers and safetensors weights; pickle files only when allowed.
DEFAULT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.md", "LICENSE*"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth"]


def download_snapshot(source: HubSource, *, allow_pickle: bool = False) -> tuple[Path, str]:
    """Download (or reuse from the hub cache) a snapshot; returns (folder, commit sha).

    Works offline when HF_HUB_OFFLINE=1 and the revision is in the cache.
    """
    patterns = source.allow_patterns or DEFAULT_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    from huggingface_hub import snapshot_download  # Hub client: only where the Hub is called
    from huggingface_hub import errors as hub_errors

    token = os.environ.get(source.token_env) or None
    try:
        folder = snapshot_download(
            source.repo_id,
            revision=source.revision,
            allow_patterns=patterns,
            cache_dir=source.cache_dir,
            token=token,
        )
    except hub_errors.GatedRepoError as exc:
        raise HubAccessError(
            f"Hub repo {source.repo_id!r} is gated: accept its terms on the hub and set "
            f"${source.token_env} to a token of an account that has access."
        ) from _scrubbed(exc, token)
    except hub_errors.RepositoryNotFoundError as exc:
        hint = "check the spelling" if token else f"check the spelling, or set ${source.token_env} if it is private"
        raise HubAccessError(f"Hub repo {source.repo_id!r} was not found: {hint}.") from _scrubbed(exc, token)
    except hub_errors.RevisionNotFoundError as exc:
        raise HubAccessError(
            f"Revision {source.revision!r} does not exist in {source.repo_id!r}; use a branch, tag "
            "or commit sha that exists."
        ) from _scrubbed(exc, token)
    except hub_errors.LocalEntryNotFoundError as exc:
        raise TransientError(
            f"{source.repo_id!r}@{source.revision} is not in the local hub cache and the hub cannot "
            "be reached; connect to the network or pre-fill the cache."
        ) from _scrubbed(exc, token)
    except hub_errors.HfHubHTTPError as exc:
        raise TransientError(
            f"The hub failed while downloading {source.repo_id!r}: {redact(str(exc), token)}"
        ) from None
    snapshot = Path(folder)
    return snapshot, snapshot.name


def _scrubbed(exc: Exception, token: str | None) -> Exception:
    """A copy of the hub's exception safe to chain: the token never appears in tracebacks."""
    return RuntimeError(redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, token))
