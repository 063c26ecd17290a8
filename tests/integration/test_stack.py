"""The shared stack for real on loopback: PostgreSQL, the Prefect server on it, the MLflow server on
it with artefact serving; a real flow run tracked by both; stopped and started again on its data."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tasks.core.errors import UserError
from tasks.ops.stack import StackConfig, client_env, running_stack, stack_down, stack_up
from tests.helpers import QUICK_EVAL, REPO, write_config

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack():
    # Not under pytest's own temporary root: it is private (0700), and PostgreSQL runs as `postgres`.
    data = Path(tempfile.mkdtemp(prefix="slmforge-stack-"))
    state = stack_up(StackConfig(data_dir=data))
    try:
        yield data, state
    finally:
        stack_down(data)
        shutil.rmtree(data, ignore_errors=True)


def test_a_data_folder_postgres_cannot_reach_is_refused_clearly(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root hands PostgreSQL to the postgres user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(UserError, match=r"cannot enter .*private.*pick a data folder outside it"):
        stack_up(StackConfig(data_dir=private / "stack"))
    assert not (private / "stack" / "postgres").exists()


def _slmforge(*args, env=None, check=True):
    result = subprocess.run([sys.executable, "-m", "tasks.cli", *args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_stack_serves_a_real_flow_run(stack, tmp_path, tiny_model_dir):
    data, state = stack
    # `up` on a running stack finds it instead of starting a second one.
    again = _slmforge("stack", "up", "--data", str(data))
    assert f"export MLFLOW_TRACKING_URI={state.mlflow_tracking_uri}" in again.stdout
    assert running_stack(data).pids == state.pids
    password = (data / "secrets" / "db_password").read_text().strip()
    assert password not in again.stdout + again.stderr

    config = write_config(tmp_path / "c.yaml", {
        "name": "stack-flow", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL, "store_dir": str(tmp_path / "store"),
    })
    run = _slmforge("run", str(config), env=client_env(state))
    assert "Q8_0" in run.stdout and password not in run.stdout + run.stderr

    client = MlflowClient(state.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("stack-flow")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {c.data.params["quant"] for c in children} == {"F16", "Q8_0"}
    q8 = next(c for c in children if c.data.params["quant"] == "Q8_0")
    assert q8.data.metrics["kld_mean"] >= 0
    # Artefacts went through the server (mlflow-artifacts:), into the stack's folder.
    assert q8.info.artifact_uri.startswith("mlflow-artifacts:")
    readme = client.download_artifacts(q8.info.run_id, "README.md", str(tmp_path))
    assert Path(readme).read_text().strip()
    assert any((data / "artifacts").rglob("README.md"))

    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    found = httpx.get(f"{state.prefect_api_url}/flow_runs/{flow_run_id}", timeout=10).json()
    assert found["state"]["type"] == "COMPLETED"


def test_down_stops_everything_and_up_keeps_the_data(stack):
    data, state = stack
    client = MlflowClient(state.mlflow_tracking_uri)
    experiment_id = client.create_experiment("kept-across-restarts")
    stopped = _slmforge("stack", "down", "--data", str(data)).stdout
    assert {"prefect", "mlflow", "postgres"} <= set(stopped.removeprefix("stopped: ").strip().split(", "))
    assert running_stack(data) is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{state.mlflow_tracking_uri}/health", timeout=2)
    assert _slmforge("stack", "env", "--data", str(data), check=False).returncode == 1

    restarted = stack_up(StackConfig(data_dir=data))
    assert MlflowClient(restarted.mlflow_tracking_uri).get_experiment(experiment_id).name == "kept-across-restarts"


def test_compose_file_passes_the_compose_schema_and_a_broken_one_fails(tmp_path):
    checker = Path(sys.executable).parent / "check-jsonschema"
    compose = REPO / "deployments" / "stack" / "compose.yaml"
    ok = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", compose], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(compose.read_text().replace("    healthcheck:\n      test:", "    healthcheck:\n      tset:", 1))
    bad = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", broken], capture_output=True, text=True)
    assert bad.returncode != 0 and "tset" in bad.stdout + bad.stderr
