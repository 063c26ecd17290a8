"""The processes a step starts while it shares the cores with builds are told to sleep at their
barriers (tasks.hosts.hostlock.child_env); a measurement worker started outside the shared lock
runs as llama-bench would, in the user's own environment."""

import os

import pytest

from tasks.evaluate.process import run_worker
from tasks.hosts import hostlock

RUNTIME = "tests.integration.env_runtime"  # a runtime whose "tokenize" reports the worker's environment


@pytest.fixture(autouse=True)
def own_lock_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


def _worker_wait_policy(tmp_path) -> str | None:
    text = tmp_path / "text.txt"
    text.write_text("unused")
    result = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(tmp_path / "none.gguf"),
                         "text_file": str(text)}, timeout_s=60)
    return result["OMP_WAIT_POLICY"]


def test_a_worker_beside_builds_gets_passive_waits_and_a_timed_one_does_not(tmp_path):
    with hostlock.shared():
        assert _worker_wait_policy(tmp_path) == "PASSIVE"
    with hostlock.exclusive():
        assert _worker_wait_policy(tmp_path) is None
    assert os.environ.get("OMP_WAIT_POLICY") is None  # the flow's own environment is untouched
