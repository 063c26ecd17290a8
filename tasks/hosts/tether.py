"""Nothing a run starts outlives it: a watchdog stops the run's processes once the run is gone.

A run killed by SIGKILL (the out-of-memory killer, `kill -9`, a scheduler's or CI's time limit) runs no
handler and no `atexit`. What it started lives on under init: Prefect's temporary API server, a llama.cpp
server being checked, a measurement worker. They hold a port, memory and cores, and a server that still
answers looks like a run still alive. Seen: two Prefect test servers left by killed pytest runs.

`tether_descendants()` starts one small watchdog process in a session of its own, so a kill of the run's
process group does not take it first. Every process the run starts inherits a token in its environment
(`SLMFORGE_TETHER`, one token per tethered ancestor). The watchdog also notes the run's descendants every
second, for children started with an environment of their own. When the run is gone it SIGTERMs every
process that carries its token or was in the last note (checked by start time, so a reused pid is never
hit), SIGKILLs what is left after a grace, and exits. A run that ends normally has stopped its children
already; the watchdog then finds nothing and exits.

Not for commands whose children are meant to outlive them (`slmforge stack up` starts daemons).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psutil

ENV = "SLMFORGE_TETHER"
POLL_S = 1.0
GRACE_S = 10.0


def tether_descendants() -> subprocess.Popen | None:
    """Start this process's watchdog (once per process); returns it, or None when already tethered."""
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    inherited = os.environ.get(ENV, "")
    if any(t.startswith(f"{os.getpid()}-") for t in inherited.split(":") if t):
        return None
    os.environ[ENV] = f"{inherited}:{token}" if inherited else token
    me = psutil.Process()
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.hosts.tether", str(me.pid), repr(me.create_time()), token],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def _alive(pid: int, create_time: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.create_time() == create_time and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _descendants(pid: int) -> dict[int, float]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for child in children:
        try:
            out[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            continue
    return out


def carries_token(process: psutil.Process, token: str) -> bool:
    """Whether `process` was started below the tethered run (its environment names the token)."""
    try:
        return token in process.environ().get(ENV, "").split(":")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False  # another user's process, or gone: not ours


def left_behind(token: str, last_seen: dict[int, float]) -> list[psutil.Process]:
    """The run's processes still alive after it: its token in their environment, or in the last note."""
    me = os.getpid()
    out = []
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            noted = last_seen.get(process.pid) == process.create_time()
        except psutil.NoSuchProcess:
            continue
        if noted or carries_token(process, token):
            out.append(process)
    return out


def stop(processes: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def watch(pid: int, create_time: float, token: str) -> None:
    """The watchdog's loop: note the run's descendants until the run is gone, then stop what it left."""
    last_seen: dict[int, float] = {}
    while _alive(pid, create_time):
        last_seen = _descendants(pid)
        time.sleep(POLL_S)
    stop(left_behind(token, last_seen))


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
