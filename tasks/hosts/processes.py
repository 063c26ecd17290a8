"""Process handling shared by every server slmforge starts (the stack's services, the serving checks):
a free port, waiting until a process answers, stopping its whole process group; and stopping a
stopped run's work."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tasks.hosts import hostlock
from tasks.hosts.tether import stop

# What a run keeps while it unwinds from a SIGTERM: its watchdog (tasks/hosts/tether.py) and Prefect's
# temporary API server, which the stopping flow and its task threads still report to (Prefect stops
# it at exit; stopped earlier, the client retries it for minutes). Matched on the command line.
RUN_SERVICES = ("tasks.hosts.tether", "prefect.server")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers(url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 2.0) -> bool:
    """Whether `url` answers 200 within `timeout_s`."""
    try:
        return httpx.get(url, headers=headers, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False  # not listening yet


def wait_healthy(url: str, *, alive: Callable[[], bool], timeout_s: float, headers: dict[str, str] | None = None,
                 interval_s: float = 0.25, request_timeout_s: float = 2.0) -> bool:
    """Poll `url` until it answers 200 (True); False when the process dies (`alive()` false) or the
    time is up. Each request may take `request_timeout_s` (never past the deadline): a server that is
    up but slow to answer needs a longer one than a server still starting. The caller says what failed,
    with its own error type."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if answers(url, headers=headers, timeout_s=min(request_timeout_s, max(left, 0.1))):
            return True
        if not alive():
            return False
        time.sleep(interval_s)
    return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie child of this process counts as dead, and is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process (e.g. in tests) is dead although kill(0) succeeds.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stop_group(pid: int, grace_s: float = 15.0) -> bool:
    """SIGTERM the process group led by `pid` (server workers included), SIGKILL after `grace_s`;
    False when there was no such group."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        pid_alive(pid)  # reap our own child, if it is one
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def log_tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else "(no log)"


def stop_work_processes(grace_s: float = 10.0) -> None:
    """SIGTERM every process this one started, directly or not, except the run's services; SIGKILL
    what is left after `grace_s`.

    A SIGTERM to a run's process alone (`kill PID`, a supervisor) reaches none of its children: its
    task threads would wait on a quantize, an imatrix pass or a server under load until they ended
    by themselves, and the run would look alive minutes after it was stopped. A server started in a
    session of its own is still a descendant, and is stopped too."""
    work: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if any(service in " ".join(child.cmdline()) for service in RUN_SERVICES):
                continue
            work += [child, *child.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    stop(work, grace_s)  # the watchdog's own terminate-then-kill


def stop_this_run() -> None:
    """A stopped run's work, at once: no step of this process starts any more (hostlock), and what its
    steps started is stopped."""
    hostlock.refuse_new_work()
    stop_work_processes()
