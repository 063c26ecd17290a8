"""Steps of different processes of one host are admitted against each other's promises (tasks.plan.board):
two runs at once, or a flow beside its Dask workers, cannot both take the same free memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tasks.plan import ledger as L
from tasks.plan.limits import MemoryLimit
from tasks.plan.needs import SAFETY, Need

GiB = 2**30
ROOT = Path(__file__).resolve().parents[2]

# Another run on this host (the same user's cache, so the same board): its ledger holds a promise of 6 GiB
# for its ONNX export, using what the file `use` says (GiB), until a line arrives on its stdin.
OTHER_RUN = """
import sys
from pathlib import Path
from tasks.plan.ledger import LEDGER as ledger
from tasks.plan.limits import MemoryLimit
from tasks.plan.needs import SAFETY, Need
use = Path(sys.argv[1])
free = MemoryLimit(available_bytes=64 * 2**30, host_available_bytes=64 * 2**30)
ledger.admit([Need("build onnx int4", "test", int(6 * 2**30 / SAFETY), 0)], lambda: free, token="export",
             in_use=lambda: int(float(use.read_text()) * 2**30))
print("held", flush=True)
sys.stdin.readline()
ledger.release("export")
print("released", flush=True)
sys.stdin.readline()
"""


def need(step: str, gib: float) -> Need:
    return Need(step, "test", int(gib * GiB / SAFETY), 0)  # gib with the safety margin


def other_run(tmp_path: Path, use_gib: float) -> subprocess.Popen:
    use = tmp_path / "use"
    use.write_text(str(use_gib))
    proc = subprocess.Popen([sys.executable, "-c", OTHER_RUN, str(use)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def free(gib: float):
    limit = MemoryLimit(available_bytes=int(gib * GiB), host_available_bytes=int(gib * GiB))
    return lambda: limit


def test_a_step_waits_for_a_step_of_another_process_and_starts_when_it_ends(tmp_path):
    proc = other_run(tmp_path, use_gib=1)
    try:
        ledger, said, admitted = L.LEDGER, [], threading.Event()  # this run's, as its steps' guards use it

        def reference() -> None:
            # 9 GiB look free, but the other run's export may still take 5 of them: 4 < 5, so it waits.
            ledger.admit([need("reference pass", 5)], free(9), token="reference", on_wait=said.append)
            admitted.set()

        thread = threading.Thread(target=reference)
        thread.start()
        assert not admitted.wait(1.0)
        assert len(said) == 1 and said[0].startswith("reference pass waits for memory")
        assert f"build onnx int4 (process {proc.pid}) may still take 5.00 GiB" in said[0]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        assert admitted.wait(L.RECHECK_S + 5)
        thread.join()
        # ... and its own promise is on the board for the other processes, until it ends.
        from tasks.plan.board import board_dir

        board = board_dir()
        assert [p.name for p in board.glob("*.json")] == [f"{os.getpid()}-reference.json"]
        ledger.release("reference")
        assert list(board.glob("*.json")) == []
    finally:
        proc.kill()
        proc.wait()


def test_what_the_other_process_uses_now_is_posted_as_it_grows(tmp_path):
    from tasks.plan.board import REFRESH_S, Board

    proc = other_run(tmp_path, use_gib=1)
    try:
        board = Board()
        assert [p.in_use_bytes for p in board.others()] == [1 * GiB]
        (tmp_path / "use").write_text("4")
        time.sleep(REFRESH_S * 2.5)
        assert [p.in_use_bytes for p in board.others()] == [4 * GiB]
        # Grown to 4 of its 6 GiB: 2 left to take, so 5 GiB beside it fit in 7 free.
        t0 = time.perf_counter()
        ledger = L.MemoryLedger(board)
        ledger.admit([need("reference pass", 5)], free(7), token="reference")
        assert time.perf_counter() - t0 < 1.0
        ledger.release("reference")
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_process_holds_no_memory_and_its_promise_is_removed(tmp_path):
    from tasks.plan.board import Board

    proc = other_run(tmp_path, use_gib=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    board = Board()
    left = board.root / f"{proc.pid}-export.json"
    assert left.exists()  # left behind by the kill
    t0 = time.perf_counter()
    ledger = L.MemoryLedger(board)
    ledger.admit([need("reference pass", 5)], free(9), token="reference")
    assert time.perf_counter() - t0 < 1.0
    assert not left.exists()
    ledger.release("reference")


# A run that forks a child while its export holds 6 GiB. The child is another process of the host: it must
# not inherit the export's promise as one of its own steps (no thread of the child would ever release it),
# and it must see that promise on the board under its parent's pid, as any other process would.
FORKED_CHILD = """
import json, os, sys
from tasks.plan.ledger import LEDGER as ledger
from tasks.plan.limits import MemoryLimit
from tasks.plan.needs import SAFETY, Need
free = MemoryLimit(available_bytes=8 * 2**30, host_available_bytes=8 * 2**30)
ledger.admit([Need("build onnx int4", "test", int(6 * 2**30 / SAFETY), 0)], lambda: free, token="export")
child = os.fork()
if child == 0:
    said = []
    class Waits(Exception):
        pass
    def waits(message):
        said.append(message)
        raise Waits  # seen waiting: enough for the test
    try:  # 4 GiB beside the parent's 6 in 8 free: it must wait for the parent's export
        ledger.admit([Need("reference pass", "test", int(4 * 2**30 / SAFETY), 0)], lambda: free, token="ref",
                     on_wait=waits)
    except Waits:
        pass
    print(json.dumps({"held": [p.step for p in ledger.held()], "said": said,
                      "others": [[p.step, p.pid] for p in ledger._board.others()]}), flush=True)
    os._exit(0)
os.waitpid(child, 0)
"""


def test_a_forked_child_sees_its_parents_promises_as_another_process(tmp_path):
    import json

    out = subprocess.run([sys.executable, "-c", FORKED_CHILD], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=True).stdout
    seen = json.loads(out.splitlines()[-1])
    assert seen["held"] == []  # the parent's step is not one of the child's
    parent_pid = seen["others"][0][1]
    assert seen["others"] == [["build onnx int4", parent_pid]]
    assert len(seen["said"]) == 1 and f"build onnx int4 (process {parent_pid}) may still take" in seen["said"][0]
