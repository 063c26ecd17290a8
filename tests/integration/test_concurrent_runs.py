"""Two `slmforge run` at once on one store and one tracking store: both finish, every artefact is
built once and has the same hashes in both runs' records."""

import json
import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.helpers import QUICK_EVAL, REPO, write_config


def test_two_runs_at_once_share_the_store_safely(tmp_path, tiny_model_dir, tracking_uri):
    store = tmp_path / "store"
    configs = [write_config(tmp_path / f"c{i}.yaml", {
        "name": "concurrent", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0", "Q4_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL,
        "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(store),
    }) for i in (1, 2)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
    runs = [subprocess.Popen([sys.executable, "-m", "tasks.cli", "run", str(c)], cwd=REPO, env=env,
                             stdout=log.open("w"), stderr=subprocess.STDOUT) for c, log in zip(configs, logs)]
    for run in runs:
        run.wait(timeout=1800)
    outputs = [log.read_text() for log in logs]
    assert [r.returncode for r in runs] == [0, 0], "\n----\n".join(o[-3000:] for o in outputs)

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("concurrent")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    by_parent: dict = {}
    for child in children:
        by_parent.setdefault(child.data.tags["mlflow.parentRunId"], {})[child.data.params["quant"]] = child
    assert len(by_parent) == 2
    first, second = by_parent.values()
    assert set(first) == set(second) == {"F16", "Q8_0", "Q4_0"}
    for quant in first:
        path = first[quant].data.tags["slmforge.artifact_path"]
        assert path == second[quant].data.tags["slmforge.artifact_path"]
        assert first[quant].data.tags["slmforge.artifact_key"] == second[quant].data.tags["slmforge.artifact_key"]
    # One folder per key, each one whole and verified: built once, never twice side by side.
    for step in ("quantize", "evaluate"):
        folders = [p for p in (store / step).iterdir() if p.is_dir() and not p.name.startswith(".")]
        assert folders and all((p / "slmforge-manifest.json").is_file() for p in folders)
        assert not [p for p in (store / step).iterdir() if p.name.startswith(".tmp-")]
    quantized = {json.loads((p / "slmforge-manifest.json").read_text())["key"] for p in (store / "quantize").iterdir()
                 if p.is_dir()}
    assert len(quantized) == 2  # Q8_0 and Q4_0, each once
