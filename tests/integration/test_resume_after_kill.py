"""A run killed mid-step (SIGKILL, no clean-up) is started again: it completes, and nothing
half-written is ever reused. Runs the real CLI in a subprocess, as a user would."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tasks.store.hashing import verify_manifest
from tests.helpers import QUICK_EVAL, REPO, write_config


def _cli(config, env, command="run"):
    return subprocess.Popen([sys.executable, "-m", "tasks.cli", command, str(config)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _group_empties(pgid, seconds):
    """The processes of group `pgid` still running after `seconds` (returns as soon as it is empty)."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline", "status"])
                if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) == pgid]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_killed_run_resumes_without_reusing_partial_files(tiny_model_dir, tmp_path):
    store = tmp_path / "store"
    config = write_config(tmp_path / "c.yaml", {
        "name": "kill-test", "model_name": "Tiny-Llama",
        "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0", "Q4_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL,
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}, "store_dir": str(store),
    })
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    first = _cli(config, env)
    deadline = time.monotonic() + 300
    while not list(store.glob("evaluate/.tmp-*")):  # killed while a measurement is half done
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # the run's process only, as the out-of-memory killer would
    first.wait()
    assert list(store.glob("evaluate/.tmp-*"))  # the kill left debris behind, as a real one would
    # What the run started (Prefect's temporary server, the measurement worker) does not outlive it:
    # its watchdog stops them (tasks/hosts/tether.py). Without it they ran on under init.
    assert _group_empties(first.pid, 60) == [], "processes of the killed run still running"

    second = _cli(config, env)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert "slmforge results" in output and "MLflow run:" in output
    for manifest_file in store.glob("*/*/slmforge-manifest.json"):
        verify_manifest(manifest_file.parent, json.loads(manifest_file.read_text())["files"])
    # Stored measurements are folders (not .tmp-*, .lock-*, nor the <key>.origin.json records beside them).
    evaluated = [p for p in store.glob("evaluate/*") if p.is_dir() and not p.name.startswith(".")]
    assert len(evaluated) == 3 and all((p / "metrics.json").is_file() for p in evaluated)
    # The killed run's MLflow records were closed by the rerun, not left RUNNING forever.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kill-test").experiment_id])
    statuses = [run.info.status for run in runs]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses


def test_a_whole_group_stopped_politely_says_so_and_leaves_no_run_alive(tiny_model_dir, tmp_path):
    """SIGTERM to the whole process group mid-measurement, as systemd, a scheduler or `timeout` send
    it: the Prefect server goes down with the run, so reporting the crash cannot connect; the user reads
    that the run was stopped (exit 143), not "a bug", and no MLflow run is left RUNNING."""
    store = tmp_path / "store"
    config = write_config(tmp_path / "c.yaml", {
        "name": "stop-test", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL,
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}, "store_dir": str(store),
    })
    # Prefect's client retries the dead server with backoff before giving up (over two minutes on its
    # defaults, measured: a known delay, not what is checked here); one retry keeps the test short.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO),
           "PREFECT_CLIENT_MAX_RETRIES": "1"}
    run = _cli(config, env)
    deadline = time.monotonic() + 300
    while not list(store.glob("evaluate/.tmp-*")):
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGTERM)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 143, output
    assert "stopped by SIGTERM" in output and "This is a bug" not in output, output
    assert _group_empties(run.pid, 60) == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("stop-test").experiment_id])
    assert runs and all(r.info.status in ("FAILED", "KILLED") for r in runs), [r.info.status for r in runs]


@pytest.mark.parametrize("command", ["run", "suite"])
def test_a_sigterm_to_the_run_alone_stops_its_builds(tiny_model_dir, tmp_path, command):
    """`kill PID`, as a supervisor sends it, reaches the run's process and none of its children. The
    flow said Crashed at once, but the build threads waited on what they had started: seen on the
    1.5B, a quantize and llama-imatrix ran on for 1.5 minutes, the run alive all that time. Stopped
    here while the ONNX export runs in a build thread: the export must not finish and be stored.
    `slmforge suite` the same (it had no SIGTERM handler: no "stopped" line, exit by the default action)."""
    store = tmp_path / "store"
    config = write_config(tmp_path / "c.yaml", {
        "name": "term-test", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}, "onnx": {"precisions": ["int4"]}},
        "evaluate": QUICK_EVAL, "store_dir": str(store),
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    })
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    if command == "suite":
        config = write_config(tmp_path / "suite.yaml", {"name": "term-suite", "models": [{"config": str(config)}],
                                                         "out_dir": str(tmp_path / "comparison")})
    run = _cli(config, env, command)
    me = psutil.Process(run.pid)
    deadline = time.monotonic() + 300
    while not any("olive.json" in _cmdline(p) for p in _descendants(me)):  # the export's own process
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()
        time.sleep(0.05)
    started = _descendants(me)
    os.kill(run.pid, signal.SIGTERM)  # the run's process alone
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 143, output
    assert "stopped by SIGTERM" in output and "This is a bug" not in output, output
    deadline = time.monotonic() + 30  # the watchdog and Prefect's server end with the run
    while (left := [p for p in started if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [_cmdline(p) for p in left]
    exports = store / "onnx-export"
    assert not [p for p in exports.glob("*") if p.is_dir() and not p.name.startswith(".")], "the export ran on"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = "term-test" if command == "run" else "suite-term-suite"  # a suite's own experiment
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert runs and all(r.info.status in ("FAILED", "KILLED") for r in runs), [r.info.status for r in runs]
    from tasks.plan.records import load_run_records  # what it measured before the stop stays for the plan

    (record,) = load_run_records(store)
    assert {"acquire", "convert"} <= {s.step for s in record.steps}, record.steps


def _descendants(process):
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _running(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(process):
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return ""
