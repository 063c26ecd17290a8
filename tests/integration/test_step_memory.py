"""Steps side by side each count the memory of their own processes (records.StepMeter): a build's
record does not carry the ONNX export that ran beside it (the 1.5B's imatrix record read 21 GiB
when llama-imatrix itself held 4)."""

from __future__ import annotations

import subprocess
import sys
import threading

from tasks.hosts import hostlock
from tasks.plan.records import metered, take_records

MiB = 2**20
# A child that holds `n` MiB resident for a while (bytearray writes every page).
HOLD = "import sys, time; block = bytearray(int(sys.argv[1]) * 2**20); time.sleep(2.5)"


def _step(name: str, mib: int, opened: threading.Barrier) -> None:
    with metered("run-memory", name) as note:
        note.n_weights = 10**9
        opened.wait()  # both steps are metered before either starts its child: each sees the other's
        subprocess.run([sys.executable, "-c", HOLD, str(mib)], env=hostlock.child_env(), check=True)


def test_each_step_counts_only_its_own_children():
    opened = threading.Barrier(2)
    threads = [threading.Thread(target=_step, args=("build onnx int4", 600, opened)),
               threading.Thread(target=_step, args=("imatrix", 40, opened))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = {r.step: r for r in take_records("run-memory")}
    assert records["build onnx int4"].peak_rss_bytes >= 600 * MiB
    # Its neighbour's 600 MiB are not in it: its own child (40 MiB and an interpreter) only.
    assert records["imatrix"].peak_rss_bytes < 300 * MiB, records["imatrix"].peak_rss_bytes / MiB
