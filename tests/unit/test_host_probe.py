"""The host probe (tasks/plan/probe.py): measured once per host and kept, measured again on request,
never half-written, and not waited for by a plan while another run holds the host's cores."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from tasks.hosts import hostlock
from tasks.plan import probe as probe_module
from tasks.plan.probe import HostProbe, ProbeError, host_probe


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """The probe's process replaced by a counter (the real one: tests/integration/test_host_probe.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake(threads: int) -> HostProbe:
        calls.append(threads)
        return HostProbe(prefill_tps=100.0 + len(calls), decode_tps=50.0, threads=threads, llama_cpp="x")

    monkeypatch.setattr(probe_module, "measure_probe", fake)
    return calls


def test_the_probe_is_measured_once_per_host_and_again_on_request(measured):
    first = host_probe("hw-a")
    assert host_probe("hw-a") == first and len(measured) == 1  # from the cache
    assert host_probe("hw-b").prefill_tps == 102.0 and len(measured) == 2  # another host: its own
    again = host_probe("hw-a", again=True)
    assert again.prefill_tps == 103.0 and host_probe("hw-a") == again and len(measured) == 3
    assert host_probe("hw-c", measure=False) is None and len(measured) == 3
    assert not list(probe_module.probe_cache().parent.glob(".host-probe*"))  # no temporary file left


def test_an_unreadable_cache_is_measured_again(measured):
    path = probe_module.probe_cache()
    path.parent.mkdir(parents=True)
    path.write_text("{half a fi")
    assert host_probe("hw-a").prefill_tps == 101.0
    key = next(iter(json.loads(path.read_text())))
    path.write_text(json.dumps({key: {"prefill_tps": -1}}))
    assert host_probe("hw-a").prefill_tps == 102.0 and len(measured) == 2


def test_a_plan_does_not_wait_for_a_run_holding_the_cores(measured):
    hostlock.lock_path().parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(hostlock.lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # another run's build

        def busy():
            raise ProbeError("busy")

        with pytest.raises(ProbeError, match="busy"):
            host_probe("hw-a", on_wait=busy)
        assert measured == []
    finally:
        os.close(fd)
    assert host_probe("hw-a", on_wait=busy).prefill_tps == 101.0
