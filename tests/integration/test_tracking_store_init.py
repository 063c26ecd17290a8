"""A new SQLite tracking store opened by several runs at once: the tables are made once."""

import subprocess
import sys
import time

SNIPPET = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
from tasks.tracking import client as tracking
from mlflow.tracking import MlflowClient
if sys.argv[3] == "locked":
    tracking.prepare_store(sys.argv[1])
print(MlflowClient(sys.argv[1]).search_experiments(max_results=1) is not None)
"""


def _race(tmp_path, mode: str, n: int = 4) -> list[int]:
    uri = f"sqlite:///{tmp_path / mode / 'mlflow.db'}"
    go = tmp_path / f"go-{mode}"
    procs = [subprocess.Popen([sys.executable, "-c", SNIPPET, uri, str(go), mode], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    time.sleep(3)  # every process imported and waiting at the line
    go.touch()
    return [p.wait(timeout=300) for p in procs]


def test_runs_starting_together_on_a_new_store_all_succeed(tmp_path):
    assert _race(tmp_path, "locked") == [0, 0, 0, 0]
