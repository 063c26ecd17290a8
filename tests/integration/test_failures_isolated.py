"""Failures stay where they happen, and MLflow never shows a dead run as alive (issue 8).

Real flows on the tiny model; faults are injected at the edges (a core that raises, a worker
that is killed, a dead flow process's leftover run)."""

import os
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.core.errors import MeasurementError, SlmforgeError, VariantsFailedError
from tasks.evaluate import measure
from tasks.evaluate.process import run_worker
from tasks.formats import get_format
from tasks.prefect_tasks import retry_only_transient
from tasks.store.artifacts import stored_step
from tasks.tracking import report
from tests.helpers import QUICK_EVAL, write_config


@pytest.fixture
def config_for(tmp_path, tiny_model_dir, tracking_uri):
    def make(types, name="Tiny-Llama", **extra):
        return write_config(tmp_path / f"c-{name}-{'-'.join(types)}.yaml", {
            "name": "faults", "model_name": name, "source": {"kind": "local", "path": str(tiny_model_dir)},
            # Serving is not the subject here, and a random-weight model answers the server with
            # nothing, which fails its smoke test (tests/integration/test_serve.py covers serving).
            "formats": {"gguf": {"types": types, "serve": {"enabled": False}}},
            "evaluate": {**QUICK_EVAL, "prompt_suite": None},
            "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"), **extra,
        })
    return make


def _statuses(tracking_uri, experiment_id):
    runs = MlflowClient(tracking_uri).search_runs([experiment_id])
    return {run.data.tags.get("mlflow.runName"): run.info.status for run in runs}


def test_a_renamed_model_gets_its_own_files(prefect_harness, config_for):
    pipeline(str(config_for(["Q8_0"])))
    summary = pipeline(str(config_for(["Q8_0"], name="Renamed-135M")))
    assert not summary["errors"]
    for folder in summary["packages"].values():
        assert [p.name for p in Path(folder).glob("*.gguf")][0].startswith("Renamed-135M-")
    assert summary["reused"]["renamed-135m-gguf-q8_0"] is False  # a new key: built, not a missing path


def test_a_crashing_measurement_and_a_failing_package_fail_only_their_variant(prefect_harness, config_for,
                                                                             tracking_uri, monkeypatch):
    real_measure, gguf = measure.measure_variant, get_format("gguf")
    real_package = type(gguf).package

    def measure_or_crash(built, **kwargs):
        if built.quant == "Q4_0":
            raise RuntimeError("injected: a bug in a runtime")
        return real_measure(built, **kwargs)

    def package_or_fail(self, built, inputs, config):
        if built.quant == "Q5_0":
            raise OSError(28, "No space left on device")
        return real_package(self, built, inputs, config)

    monkeypatch.setattr(measure, "measure_variant", measure_or_crash)
    monkeypatch.setattr(type(gguf), "package", package_or_fail)
    with pytest.raises(VariantsFailedError) as failed:
        pipeline(str(config_for(["Q8_0", "Q5_0", "Q4_0"])))
    summary = failed.value.summary
    assert "RuntimeError: injected" in summary["errors"]["tiny-llama-gguf-q4_0"]
    assert "No space left" in summary["errors"]["tiny-llama-gguf-q5_0"]
    assert "tiny-llama-gguf-q8_0" in summary["packages"]
    statuses = _statuses(tracking_uri, summary["experiment_id"])
    assert "RUNNING" not in statuses.values()
    assert statuses["tiny-llama-gguf-q8_0"] == "FINISHED" and statuses["tiny-llama-gguf-q4_0"] == "FAILED"


def test_a_flow_that_dies_early_leaves_no_run_running(prefect_harness, tmp_path, tracking_uri):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf" * 100)
    config = write_config(tmp_path / "bad.yaml", {
        "name": "dies-early", "model_name": "Bad", "source": {"kind": "gguf", "path": str(garbage)},
        "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"),
    })
    with pytest.raises(SlmforgeError):
        pipeline(str(config))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("dies-early")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and {run.info.status for run in runs} == {"FAILED"}
    assert "garbage.gguf" in runs[0].data.tags["slmforge.error"]


def test_runs_of_a_killed_flow_process_are_reaped_as_killed(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("reap")
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_owner = report.owner(child.pid)
    child.kill()
    child.wait()
    left = client.create_run(experiment_id, tags={report.OWNER_TAG: dead_owner}).info.run_id
    alive = client.create_run(experiment_id, tags={report.OWNER_TAG: report.owner()}).info.run_id
    assert report.reap_dead_runs(client, experiment_id) == [left]
    assert client.get_run(left).info.status == "KILLED" and client.get_run(alive).info.status == "RUNNING"


def _runtime_module(tmp_path, monkeypatch, name: str, source: str) -> str:
    """A fake runtime the worker imports: the fault sits at the edge, the worker is real."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return name


def test_a_worker_killed_for_memory_is_a_final_error_not_retried(tmp_path, monkeypatch):
    runtime = _runtime_module(tmp_path, monkeypatch, "suicidal_runtime",
                              "import os, signal\ndef load(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(MeasurementError, match="SIGKILL.*out of memory") as killed:
        run_worker({"mode": "smoke", "runtime": runtime, "model": "m.gguf", "prompt": "hi", "max_new_tokens": 1},
                   timeout_s=60)
    from prefect.states import Failed

    assert retry_only_transient(None, None, Failed(data=killed.value)) is False


def test_a_worker_past_its_timeout_is_stopped(tmp_path, monkeypatch):
    runtime = _runtime_module(tmp_path, monkeypatch, "slow_runtime",
                              "import time\ndef tokenize_text(*a, **k):\n    time.sleep(30)\n")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(MeasurementError, match="timeout_s=2"):
        run_worker({"mode": "tokenize", "runtime": runtime, "model": "m", "text_file": str(tmp_path / "t.txt")},
                   timeout_s=2)


def test_two_builders_of_one_key_build_once(tmp_path):
    builds = []

    def build(tmp):
        builds.append(1)
        (tmp / "out.txt").write_text("made once")

    results = []
    threads = [threading.Thread(target=lambda: results.append(stored_step(tmp_path, "s", {"k": 1}, build)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and sorted(r.reused for r in results) == [False, True, True, True]
    assert (results[0].path / "out.txt").read_text() == "made once"
