"""Hub acquisition, offline: a real hub cache built on disk, and the hub client's own error
mapping (`hf_raise_for_status`) applied to the responses the hub sends for missing/gated repos."""

import shutil

import httpx2
import pytest
from huggingface_hub.utils import hf_raise_for_status

from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.sources import HubSource
from tasks.core.errors import HubAccessError, TransientError

SECRET = "hf_" + "fake1token" * 3  # assembled: no credential-shaped literal in the source
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root, repo_id, model_dir):
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def test_cached_snapshot_is_used_offline_and_commit_recorded(tiny_model_dir, tmp_path):
    cache = _hub_cache(tmp_path / "hub", "org/tiny", tiny_model_dir)
    source = HubSource(kind="hub", repo_id="org/tiny", revision="main", cache_dir=cache)
    model = acquire_model(source, AcquireConfig(), store_root=tmp_path / "store")
    assert model.source == "hub:org/tiny" and model.source_revision == COMMIT
    assert model.hf_dir.name == COMMIT


def test_uncached_repo_offline_says_what_to_do(tmp_path):
    source = HubSource(kind="hub", repo_id="org/absent", cache_dir=tmp_path / "hub")
    with pytest.raises(TransientError, match="not in the local hub cache"):
        acquire_model(source, AcquireConfig(), store_root=tmp_path / "store")


def _hub_error(error_code: str, status: int):
    """The exception huggingface_hub itself raises for the hub's answer with this error code."""
    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/x/revision/main")
    response = httpx2.Response(status, request=request, headers={"X-Error-Code": error_code},
                               json={"error": f"{error_code} (token {SECRET})"})
    try:
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001 - we want whatever the client raises
        return exc
    raise AssertionError("hf_raise_for_status did not raise")


@pytest.mark.parametrize("code,status,expected", [
    ("RepoNotFound", 404, "was not found"), ("GatedRepo", 403, "is gated"),
    ("RevisionNotFound", 404, "does not exist"),
])
def test_hub_errors_are_clear_and_never_show_the_token(monkeypatch, tmp_path, code, status, expected):
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", SECRET)
    error = _hub_error(code, status)

    def refuse(*args, **kwargs):
        assert kwargs["token"] == SECRET  # the token is passed to the client, and only there
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(HubAccessError, match=expected) as info:
        acquire_model(HubSource(kind="hub", repo_id="org/x"), AcquireConfig(), store_root=tmp_path)
    chain = [info.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    assert all(SECRET not in str(exc) for exc in chain)
