"""An OpenAI-compatible server on loopback as a child process, always stopped.

The server runs in its own process group, so stopping it also stops anything it started; a
`finally` and an `atexit` hook both stop it, so neither an error nor an interpreter exit leaves
it listening. The API key travels in the environment (never on the command line, where `ps`
would show it).
"""

from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import SlmforgeError
from tasks.hosts.processes import log_tail, stop_group, wait_healthy


class ServerStartError(SlmforgeError):
    """The server did not answer its health endpoint in time or exited; the message holds its log tail."""


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # e.g. http://127.0.0.1:40123/v1
    api_key: str
    pid: int
    startup_s: float
    model: str  # the name requests use


@contextmanager
def running_server(command: list[str], *, port: int, model: str, health_path: str = "/v1/models",
                   startup_timeout_s: float = 120, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Start `command` (which must listen on 127.0.0.1:`port`), wait until `health_path` answers 200
    with the API key, yield it, then stop it (SIGTERM to its group, SIGKILL after 10 s)."""
    api_key = secrets.token_urlsafe(24)
    log = tempfile.NamedTemporaryFile(prefix="slmforge-server-", suffix=".log", delete=False)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, **(env or {}), "API_KEY": api_key})
    atexit.register(_stop, process)
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}{health_path}", api_key, startup_timeout_s, Path(log.name))
        yield RunningServer(f"http://127.0.0.1:{port}/v1", api_key, process.pid,
                            time.perf_counter() - started, model)
    finally:
        _stop(process)
        atexit.unregister(_stop)
        log.close()
        os.unlink(log.name)


def _wait_healthy(process: subprocess.Popen, url: str, api_key: str, timeout_s: float, log: Path) -> None:
    if wait_healthy(url, alive=lambda: process.poll() is None, timeout_s=timeout_s,
                    headers={"Authorization": f"Bearer {api_key}"}):
        return
    if process.poll() is not None:
        raise ServerStartError(f"the server exited with code {process.returncode} before answering {url}; "
                               f"its log ends with:\n{log_tail(log)}")
    raise ServerStartError(f"the server did not answer {url} within {timeout_s:.0f} s "
                           f"(raise serve.startup_timeout_s on a slow host); its log ends with:\n{log_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        stop_group(process.pid, grace_s=10)
        process.wait(timeout=10)
