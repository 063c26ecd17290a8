"""The host's cores: a measurement excludes builds and other measurements, builds share, a killed
holder frees the host."""

import signal
import subprocess
import sys
import threading

import pytest

from tasks.hosts import hostlock


@pytest.fixture(autouse=True)
def own_lock_file(tmp_path, monkeypatch):
    """A lock file of the test's own: a real run on this host must not decide the outcome."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


def _try(mode, waiting: list[threading.Thread]) -> bool:
    """Whether `mode` is granted at once (from another thread: its own open file, its own lock).
    A refused attempt goes on waiting in its thread and is put in `waiting`: it takes the lock
    once it is free, so a later check must first let it finish (_settle)."""
    granted = []

    def attempt():
        waited = []
        with mode(on_wait=lambda: waited.append(True)):
            granted.append(not waited)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(timeout=0.5)
    if thread.is_alive():
        waiting.append(thread)
    return bool(granted and granted[0])


def _settle(waiting: list[threading.Thread]) -> None:
    for thread in waiting:
        thread.join(timeout=5)
        assert not thread.is_alive(), "a waiting attempt never got the lock after it was released"
    waiting.clear()


def test_builds_share_and_a_measurement_waits_for_them():
    waiting = []
    with hostlock.shared():
        assert _try(hostlock.shared, waiting)
        assert not _try(hostlock.exclusive, waiting)
    _settle(waiting)  # the measurement got the host once the build was done


def test_a_measurement_holds_the_host_alone():
    waiting = []
    with hostlock.exclusive():
        assert not _try(hostlock.shared, waiting)
        assert not _try(hostlock.exclusive, waiting)
    _settle(waiting)
    assert _try(hostlock.exclusive, waiting)


def test_a_killed_holder_frees_the_host():
    waiting = []
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from tasks.hosts import hostlock\n"
        "with hostlock.exclusive():\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, env={**__import__('os').environ})
    assert holder.stdout.readline().strip() == "held"
    assert not _try(hostlock.shared, waiting)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    _settle(waiting)  # the build that waited got the host from the dead holder
    assert _try(hostlock.exclusive, waiting)


def test_children_started_beside_builds_sleep_at_barriers(monkeypatch):
    """A thread holding the cores shared starts its children with OMP_WAIT_POLICY=PASSIVE (two
    spinning OpenMP processes on 2 cores took twice the time); a timed measurement's children, and
    another thread's, keep this process's own environment."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "OMP_WAIT_POLICY" not in hostlock.child_env()
    seen_elsewhere = []
    with hostlock.shared():
        assert hostlock.child_env({"X": "1"}) == {**hostlock.os.environ, "OMP_WAIT_POLICY": "PASSIVE", "X": "1"}
        other = threading.Thread(target=lambda: seen_elsewhere.append(hostlock.child_env()))
        other.start()
        other.join()
        with hostlock.shared():  # nested: still shared after the inner one ends
            pass
        assert hostlock.child_env()["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in seen_elsewhere[0]
    assert "OMP_WAIT_POLICY" not in hostlock.child_env()
    with hostlock.exclusive():
        assert "OMP_WAIT_POLICY" not in hostlock.child_env()


def test_a_stopping_run_starts_no_new_step(monkeypatch):
    """After a SIGTERM (tasks/remote/build_runner.py), a build queued behind the stopped ones, or a
    thread waiting for the cores, must not start: it raises instead of running."""
    monkeypatch.setattr(hostlock, "_stopping", threading.Event())
    with hostlock.shared():
        pass  # before the stop: granted
    hostlock.refuse_new_work()
    for mode in (hostlock.shared, hostlock.exclusive):
        with pytest.raises(hostlock.RunStopping, match="stopping"):
            with mode():
                pytest.fail("a step started after the stop")


def test_a_step_stopped_in_the_middle_says_so_not_what_its_killed_tool_said(monkeypatch):
    """A build whose processes the stop killed failed with the tool's own words ("ONNX export exited
    with code 0 and produced no model ... Check the versions"), which sends a user after a fault that
    is not there. Failing while the run stops, a step raises RunStopping, the tool's error chained."""
    monkeypatch.setattr(hostlock, "_stopping", threading.Event())
    with pytest.raises(hostlock.RunStopping, match="stopped in the middle") as raised:
        with hostlock.shared():
            hostlock.refuse_new_work()  # the SIGTERM arrives while the step runs
            raise RuntimeError("ONNX export (Olive) exited with code 0 and produced no model")
    assert isinstance(raised.value.__cause__, RuntimeError)
    with pytest.raises(ValueError):  # a failure of a run not stopping is left as it is
        monkeypatch.setattr(hostlock, "_stopping", threading.Event())
        with hostlock.exclusive():
            raise ValueError("a real fault")
