"""A measurement worker never outlives the flow that started it: killed with it when the flow
stops (SIGTERM handler), gone by itself when the flow process dies (SIGKILL). The worker runs a
runtime that only sleeps (tests/unit/slow_runtime.py): what is tested is the process handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tasks.core.errors import MeasurementError
from tasks.evaluate.process import run_worker, stop_all_workers
from tests.helpers import REPO

SLOW = {"mode": "tokenize", "runtime": "tests.unit.slow_runtime", "model": "none.gguf"}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def _workers(pid: int) -> list[int]:
    """The measurement workers among `pid`'s children (a test session has other children too,
    such as the Prefect test server)."""
    return [child.pid for child in psutil.Process(pid).children()
            if "tasks.evaluate.worker" in " ".join(child.cmdline())]


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _measure_in_a_thread(tmp_path) -> tuple[threading.Thread, list[str]]:
    """A flow's task thread waiting on a (sleeping) worker; the errors its run_worker raised."""
    errors: list[str] = []

    def measure():
        try:
            run_worker({**SLOW, "text_file": str(tmp_path / "t.txt")}, timeout_s=300)
        except MeasurementError as exc:
            errors.append(str(exc))

    (tmp_path / "t.txt").write_text("x")
    waiter = threading.Thread(target=measure)
    waiter.start()
    return waiter, errors


def test_a_stopping_flow_kills_the_workers_it_waits_on(tmp_path):
    waiter, errors = _measure_in_a_thread(tmp_path)
    assert _wait_for(lambda: _workers(os.getpid()), 20)
    worker = _workers(os.getpid())[0]
    assert stop_all_workers() == 1
    waiter.join(timeout=10)
    assert not waiter.is_alive() and _gone(worker)
    assert "killed by SIGKILL" in errors[0]


def test_a_stop_between_spawn_and_registration_still_kills_the_worker(tmp_path, monkeypatch):
    """The worker exists from the moment Popen forks: a stop arriving before run_worker had noted it
    missed it (seen once under load: stop_all_workers() == 0, the worker ran on). The gap is widened here
    to half a second; the stop must still find the worker."""
    import tasks.evaluate.process as process

    spawned, real_popen = threading.Event(), subprocess.Popen

    def slow_to_register(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        spawned.set()
        time.sleep(0.5)  # a loaded host: this thread is descheduled right after the fork
        return proc

    monkeypatch.setattr(process.subprocess, "Popen", slow_to_register)
    waiter, errors = _measure_in_a_thread(tmp_path)
    assert spawned.wait(20)
    assert stop_all_workers() == 1
    waiter.join(timeout=10)
    assert not waiter.is_alive() and "killed by SIGKILL" in errors[0]


def test_a_worker_exits_when_its_flow_process_is_killed(tmp_path):
    (tmp_path / "t.txt").write_text("x")
    flow = subprocess.Popen([sys.executable, "-c", (
        "from tasks.evaluate.process import run_worker\n"
        f"run_worker({{**{SLOW!r}, 'text_file': {str(tmp_path / 't.txt')!r}}}, timeout_s=300)")], cwd=REPO)
    try:
        assert _wait_for(lambda: _workers(flow.pid), 20)
        worker = _workers(flow.pid)[0]
        time.sleep(1)  # the worker is past its start-up and sleeping in the runtime
        flow.send_signal(signal.SIGKILL)
        flow.wait()
        assert _wait_for(lambda: _gone(worker), 5), "the worker outlived its flow process"
    finally:
        if flow.poll() is None:
            flow.kill()


@pytest.fixture(autouse=True)
def no_strays():
    yield
    for pid in _workers(os.getpid()):
        psutil.Process(pid).kill()


def test_a_worker_whose_parent_died_before_its_watch_started_exits():
    """The parent may be killed while the worker is still importing (a loaded host): the watch then
    starts with init as the parent and must see the one that started it gone."""
    from tasks.evaluate.process import EXIT_PARENT_GONE, PARENT_ENV

    gone_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_parent.wait()
    worker = subprocess.run(
        [sys.executable, "-c", "import time\nfrom tasks.evaluate.process import exit_with_parent\n"
                               "exit_with_parent(poll_s=0.1)\ntime.sleep(60)"],
        cwd=REPO, env={**os.environ, PARENT_ENV: str(gone_parent.pid)}, timeout=30)
    assert worker.returncode == EXIT_PARENT_GONE
