"""HumanEval programs in the sandbox (tasks.evaluate.humaneval.sandbox): canonical solutions pass; a
wrong answer, a socket, a write outside the box, a loop forever, a 10 GB allocation and a fork bomb
are all scored failures, and nothing outside the box changed. Seconds in all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.evaluate.humaneval.problems import ProblemSubset, load_problems, program_text
from tasks.evaluate.humaneval.sandbox import SandboxConfig, isolation_problem, run_program

NO_SANDBOX = pytest.mark.skipif(isolation_problem() is not None, reason=f"no sandbox here: {isolation_problem()}")

FIRST = ProblemSubset(count=5)


@pytest.fixture(scope="module")
def problem():
    return load_problems(ProblemSubset(task_ids=["HumanEval/2"]))[0]  # truncate_number: return number % 1.0


def run(problem, body: str, **limits):
    """The completion `body` prepended to the correct one: it runs when check() calls the function."""
    return run_program(program_text(problem, body + problem.canonical_solution), SandboxConfig(**limits))


@NO_SANDBOX
def test_canonical_solutions_pass():
    for p in load_problems(FIRST):
        result = run_program(program_text(p, p.canonical_solution))
        assert result.passed and result.status == "passed", (p.task_id, result.output)


@NO_SANDBOX
def test_a_wrong_completion_fails(problem):
    result = run_program(program_text(problem, "    return 0.25\n"))
    assert not result.passed and "AssertionError" in result.output


@NO_SANDBOX
def test_an_early_successful_exit_is_not_a_pass(problem):
    assert not run(problem, "    import os; os._exit(0)\n").passed


@NO_SANDBOX
@pytest.mark.parametrize("address", [("127.0.0.1", 22), ("1.1.1.1", 80)])
def test_sockets_cannot_connect(problem, address):
    body = f"    import socket; socket.create_connection({address!r}, timeout=3)\n"
    result = run(problem, body)
    assert not result.passed and "Network is unreachable" in result.output


@NO_SANDBOX
def test_writes_outside_the_box_fail_and_change_nothing(problem, tmp_path):
    target, home_file = tmp_path / "escaped.txt", Path.home() / "slmforge-sandbox-escape.txt"
    assert not home_file.exists()
    for path in (target, home_file, Path("~/x.txt")):
        body = f"    open({str(path)!r}, 'w').write('x')\n"
        assert not run(problem, body).passed
    assert not run(problem, "    import os; open(os.path.expanduser('~/x'), 'w')\n    open('/tmp/x', 'w')\n").passed
    assert not target.exists() and not home_file.exists() and list(tmp_path.iterdir()) == []
    # the box itself is writable: the throw-away folder is where it may work
    assert run(problem, "    open('scratch.txt', 'w').write('x')\n").passed


@NO_SANDBOX
def test_the_store_and_the_users_files_are_not_even_readable(problem):
    listing = run_program("import os; print(sorted(os.listdir('/')), os.path.exists('/work'), os.getcwd())")
    assert listing.passed
    assert "False /box" in listing.output and "'work'" not in listing.output and "'home'" not in listing.output


@NO_SANDBOX
def test_a_loop_forever_is_stopped_within_the_time_limit(problem):
    result = run(problem, "    while True: pass\n", wall_s=2, cpu_s=10)
    assert not result.passed and result.status == "timeout" and result.seconds < 4


@NO_SANDBOX
def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock(problem):
    result = run(problem, "    while True: pass\n", wall_s=20, cpu_s=1)
    assert not result.passed and result.status == "failed" and result.seconds < 10


@NO_SANDBOX
def test_a_10_gb_allocation_is_stopped(problem):
    result = run(problem, "    x = bytearray(10 * 2**30)\n")
    assert not result.passed and "MemoryError" in result.output


@NO_SANDBOX
def test_no_new_processes(problem):
    result = run(problem, "    import os\n    os.fork()\n")
    assert not result.passed and "Operation not permitted" in result.output


def test_without_isolation_it_refuses_and_runs_nothing(monkeypatch, tmp_path):
    from tasks.evaluate.humaneval import sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert "`unshare` command" in sandbox.isolation_problem.__wrapped__()
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "the `unshare` command (util-linux) is not installed")
    marker = tmp_path / "ran"
    with pytest.raises(sandbox.SandboxUnavailableError, match="only in a sandbox, and the `unshare` command"):
        run_program(f"open({str(marker)!r}, 'w')")
    assert not marker.exists()
