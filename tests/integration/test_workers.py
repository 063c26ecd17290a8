"""Measurements routed to hardware classes, for real on loopback: the stack, two workers in two work
pools, one flow. One parent run gets both classes' children; a worker killed mid-measurement leaves
the other class intact and no run that looks alive, and the rerun completes what is missing."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tasks.ops.stack import StackConfig, client_env, stack_down, stack_up
from tests.helpers import QUICK_EVAL, REPO, write_config

pytestmark = pytest.mark.stack
CLASS_TAG = "slmforge.hardware_class"


@pytest.fixture(scope="module")
def stack_env():
    data = Path(tempfile.mkdtemp(prefix="slmforge-stack-"))  # not under pytest's private (0700) root
    state = stack_up(StackConfig(data_dir=data))
    try:
        yield {**os.environ, "PYTHONPATH": str(REPO), **client_env(state)}
    finally:
        stack_down(data)
        shutil.rmtree(data, ignore_errors=True)


class Worker:
    """`slmforge worker start` in its own process group (so killing it kills its flow runs too)."""

    def __init__(self, hardware_class: str, env: dict, log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", "worker", "start", "--hardware-class", hardware_class],
            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while "started!" not in log.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _flow_run_state(env: dict, name: str) -> str | None:
    body = {"flow_runs": {"name": {"any_": [name]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 1}
    runs = httpx.post(f"{env['PREFECT_API_URL']}/flow_runs/filter", json=body, timeout=10).json()
    return runs[0]["state"]["type"] if runs else None


def _children_by_class(client: MlflowClient, experiment_id: str, parent_id: str) -> dict:
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    found: dict = {}
    for run in runs:
        found.setdefault(run.data.tags.get(CLASS_TAG), {})[run.data.params["quant"]] = run
    return found


def test_two_classes_one_parent_a_lost_worker_and_the_rerun(stack_env, tmp_path, tiny_model_dir):
    config = write_config(tmp_path / "c.yaml", {
        "name": "two-classes", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL, "store_dir": str(tmp_path / "store"),
        "hardware": ["cpu-a", "cpu-b"], "remote_timeout_s": 900,
    })
    workers = {cls: Worker(cls, stack_env, tmp_path / f"{cls}.log") for cls in ("cpu-a", "cpu-b")}
    try:
        first = subprocess.Popen([sys.executable, "-m", "tasks.cli", "run", str(config)], cwd=REPO, env=stack_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 900
        while _flow_run_state(stack_env, "measure-on-cpu-b") != "RUNNING":
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()[-3000:]
            time.sleep(1)
        workers["cpu-b"].kill()  # the machine of class cpu-b is lost mid-measurement
        out, _ = first.communicate(timeout=900)
        assert first.returncode == 1 and "hardware class cpu-b" in out, out[-3000:]
        assert _flow_run_state(stack_env, "measure-on-cpu-b") == "CRASHED"

        client = MlflowClient(stack_env["MLFLOW_TRACKING_URI"])
        experiment_id = client.get_experiment_by_name("two-classes").experiment_id
        everything = client.search_runs([experiment_id])
        parents = [r for r in everything if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, [(r.info.run_name, r.data.tags) for r in everything]
        parent = parents[0]
        assert parent.info.status == "FAILED" and "cpu-b" in parent.data.tags["slmforge.error"]
        children = _children_by_class(client, experiment_id, parent.info.run_id)
        a = children["cpu-a"]
        assert set(a) == {"F16", "Q8_0"} and all(r.info.status == "FINISHED" for r in a.values())
        assert a["Q8_0"].data.metrics["kld_mean"] >= 0 and a["Q8_0"].data.metrics["decode_tps"] > 0
        assert all(r.info.status != "RUNNING" for r in children.get("cpu-b", {}).values())

        workers["cpu-b"] = Worker("cpu-b", stack_env, tmp_path / "cpu-b-again.log")
        second = subprocess.run([sys.executable, "-m", "tasks.cli", "run", str(config)], cwd=REPO, env=stack_env,
                                capture_output=True, text=True, timeout=900)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        parents = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'")
        (rerun,) = [p for p in parents if "mlflow.parentRunId" not in p.data.tags and p.info.run_id != parent.info.run_id]
        again = _children_by_class(client, experiment_id, rerun.info.run_id)
        assert set(again["cpu-a"]) == set(again["cpu-b"]) == {"F16", "Q8_0"}
        # cpu-a's figures come from the store (the same numbers), cpu-b's were measured now.
        assert again["cpu-a"]["Q8_0"].data.metrics["decode_tps"] == a["Q8_0"].data.metrics["decode_tps"]
        assert again["cpu-b"]["Q8_0"].data.metrics["decode_tps"] > 0
    finally:
        for worker in workers.values():
            worker.kill()
