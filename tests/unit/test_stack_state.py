"""Finding a running stack from its stack.json, with real server processes on loopback standing in for
the Prefect and MLflow servers (PostgreSQL is not needed to decide whether the stack runs)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tasks.core.errors import UserError
from tasks.hosts.processes import free_port
from tasks.ops.stack import StackState, running_stack

# A health endpoint that answers after `delay` seconds, the way a server does on a host whose cores are
# taken by other work.
SLOW_SERVER = """
import http.server, sys, time
delay = float(sys.argv[2])
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(delay)
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


@pytest.fixture
def servers():
    started = []

    def start(name: str, delay_s: float) -> tuple[int, int]:
        port = free_port()
        # Named on its command line like the server it stands for (the stack checks the number is still its).
        process = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(port), str(delay_s), name, "server"])
        started.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # listening, whatever its answers' delay
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.05)
            except httpx.TimeoutException:
                break
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            break
        return port, process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def write_state(data: Path, prefect: tuple[int, int], mlflow: tuple[int, int]) -> StackState:
    state = StackState(host="127.0.0.1", postgres_port=5432, prefect_port=prefect[0], mlflow_port=mlflow[0],
                       pids={"prefect": prefect[1], "mlflow": mlflow[1]})
    (data / "stack.json").write_text(state.model_dump_json())
    return state


def test_a_live_stack_that_answers_slowly_is_found_not_taken_for_dead(tmp_path, servers):
    # Before: one health probe of two seconds; a busy Prefect server took longer, `running_stack` said
    # None and `stack up` started a second pair of servers beside the first.
    state = write_state(tmp_path, servers("prefect", 3.0), servers("mlflow", 0.0))
    assert running_stack(tmp_path, patience_s=20) == state


def test_a_live_stack_that_never_answers_is_an_error_naming_it(tmp_path, servers):
    write_state(tmp_path, servers("prefect", 0.0), servers("mlflow", 600.0))
    with pytest.raises(UserError, match=r"runs \(processes prefect \d+, mlflow \d+\) but its MLflow server did not "
                                        r"answer .*/health within 3 s; .*stack down --data"):
        running_stack(tmp_path, patience_s=3)


def test_a_stack_whose_server_died_is_not_running(tmp_path, servers):
    prefect = servers("prefect", 0.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_state(tmp_path, prefect, (free_port(), dead.pid))
    started = time.monotonic()
    assert running_stack(tmp_path, patience_s=30) is None
    assert time.monotonic() - started < 5  # a dead server is not waited for
    assert running_stack(tmp_path / "elsewhere") is None


def test_a_number_taken_by_another_process_after_a_restart_is_neither_waited_for_nor_stopped(tmp_path, servers):
    from tasks.ops.stack import stack_down

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        write_state(tmp_path, servers("prefect", 0.0), (free_port(), stranger.pid))
        started = time.monotonic()
        assert running_stack(tmp_path, patience_s=30) is None
        assert time.monotonic() - started < 5
        assert "mlflow" not in stack_down(tmp_path)
        assert stranger.poll() is None  # still running: not the stack's to stop
    finally:
        stranger.kill()
        stranger.wait()
