"""The host's cores: a measurement excludes builds and other measurements, builds share, a killed
holder frees the host."""

import signal
import subprocess
import sys
import threading
import time

from tasks import hostlock


def _try(mode) -> bool:
    """Whether `mode` is granted at once (from another thread: its own open file, its own lock)."""
    granted = []

    def attempt():
        waited = []
        with mode(on_wait=lambda: waited.append(True)):
            granted.append(not waited)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(timeout=0.5)
    return bool(granted and granted[0])


def test_builds_share_and_a_measurement_waits_for_them():
    with hostlock.shared():
        assert _try(hostlock.shared)
        assert not _try(hostlock.exclusive)


def test_a_measurement_holds_the_host_alone():
    with hostlock.exclusive():
        assert not _try(hostlock.shared)
        assert not _try(hostlock.exclusive)
    assert _try(hostlock.exclusive)


def test_a_killed_holder_frees_the_host(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from tasks import hostlock\n"
        "with hostlock.exclusive():\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, env={**__import__('os').environ})
    assert holder.stdout.readline().strip() == "held"
    assert not _try(hostlock.shared)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while not _try(hostlock.shared):
        assert time.monotonic() < deadline
