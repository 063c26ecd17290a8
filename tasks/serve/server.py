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
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import SlmforgeError
from tasks.hosts.processes import log_tail, stop_group, wait_healthy
from tasks.serve.llama_cpp_server import PROMPT_ONLY


class ServerStartError(SlmforgeError):
    """The server did not answer its health endpoint in time or exited; the message holds its log tail."""


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # e.g. http://127.0.0.1:40123/v1
    api_key: str
    pid: int
    startup_s: float
    model: str  # the name requests use


def llama_cpp_command(gguf: Path, *, port: int, n_ctx: int, threads: int, chat_template: bool = True) -> list[str]:
    """llama-cpp-python's server on one GGUF. With a chat template in the file (`chat_template`),
    chat_format stays unset, so the server renders prompts with that template; without one, the
    server's own fallback (Llama-2 `[INST]`) would be used, so the prompt-only format is named
    instead (tasks.serve.llama_cpp_server: the message text, as measured offline)."""
    module, extra = ("llama_cpp.server", []) if chat_template else (
        "tasks.serve.llama_cpp_server", ["--chat_format", PROMPT_ONLY])
    return [sys.executable, "-m", module, "--model", str(gguf), "--model_alias", gguf.stem,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            # Its default stops a running request when another arrives: concurrent clients would fail.
            "--interrupt_requests", "false", *extra]


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
