"""A run killed with SIGKILL leaves nothing running: its watchdog stops what it started (tasks/hosts/tether.py)."""

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.helpers import REPO

# A stand-in for a run: tethered, it starts a server-like child that inherits its environment and one
# started with an environment of its own (as a server started with env={...} would be), then waits.
RUN = """
import os, subprocess, sys
from tasks.hosts.tether import tether_descendants
tether_descendants()
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
inherited = subprocess.Popen(sleeper)
own_env = subprocess.Popen(sleeper, env={"PATH": os.environ.get("PATH", "")})
print(inherited.pid, own_env.pid, flush=True)
subprocess.Popen(sleeper).wait()
"""


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after `seconds` (polled: returns as soon as all are gone)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_a_killed_run_leaves_no_process_behind():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # not the run's
    run = subprocess.Popen([sys.executable, "-c", RUN], cwd=REPO, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        children = [int(pid) for pid in run.stdout.readline().split()]
        assert len(children) == 2 and all(psutil.pid_exists(pid) for pid in children)
        # The watchdog notes descendants once a second: the child with its own environment is known by
        # that note only, so let it be taken before the kill.
        time.sleep(2.5)
        os.kill(run.pid, signal.SIGKILL)  # the run only, as the out-of-memory killer would
        run.wait()
        assert _gone_within(children, 30) == [], "the killed run's children outlived it"
        assert bystander.poll() is None, "the watchdog stopped a process the run did not start"
    finally:
        for pid in [run.pid, *locals().get("children", [])]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        bystander.kill()
        bystander.wait()


def test_a_run_that_ends_normally_takes_its_watchdog_with_it():
    script = "from tasks.hosts.tether import tether_descendants; w = tether_descendants(); print(w.pid, flush=True)"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    watchdog = int(out.stdout.split()[0])
    assert _gone_within([watchdog], 15) == [], "the watchdog outlived the run it watched"
