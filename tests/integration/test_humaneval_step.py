"""HumanEval as a step of the real flow (tiny random-weight model, real llama.cpp, real sandbox, real
Prefect and MLflow): every GGUF variant's completions are generated, run in the sandbox and scored;
the figures, each problem's result and the flips against the f16 reach MLflow, and every completion
with its verdict is kept beside the stored figures."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.evaluate.humaneval.sandbox import isolation_problem
from tasks.tracking.client import read_series
from tests.helpers import QUICK_EVAL, tools_required, write_config

# No sandbox, no HumanEval (it never runs a program unsandboxed): skipped on such a host, but CI must run it.
pytestmark = pytest.mark.skipif(isolation_problem() is not None and not tools_required(),
                                reason=f"no sandbox here: {isolation_problem()}")


def test_every_gguf_variant_gets_pass_at_1_and_flips(prefect_harness, tmp_path, tiny_model_dir, tracking_uri):
    config = write_config(tmp_path / "c.yaml", {
        "name": "tiny-humaneval", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}},
        "evaluate": {**QUICK_EVAL, "prompt_suite": None,
                     "humaneval": {"problems": {"task_ids": ["HumanEval/2", "HumanEval/0"]}, "max_tokens": 24}},
        "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"),
    })
    summary = pipeline(str(config))
    client = MlflowClient(tracking_uri)
    children = {r.data.params["quant"]: r for r in client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'")}
    for quant, run in children.items():
        metrics = run.data.metrics
        assert metrics["humaneval_problems"] == 2, quant
        assert metrics["humaneval_pass_at_1_low"] <= metrics["humaneval_pass_at_1"] <= metrics["humaneval_pass_at_1_high"]
        passes = read_series(client, run.info.run_id, "problem_humaneval_pass")
        assert len(passes) == 2 and metrics["humaneval_pass_at_1"] == sum(passes) / 2
    q8 = children["Q8_0"]
    # flips against the f16, problem by problem (a random model passes neither, so none flip)
    assert q8.data.metrics["humaneval_lost"] + q8.data.metrics["humaneval_gained"] == 0
    assert q8.data.tags["slmforge.humaneval_lost_ids"] == "-" and "humaneval_mcnemar_p" in q8.data.metrics
    stored = next(Path(tmp_path / "store" / "evaluate").glob("*/humaneval.json"))
    record = json.loads(stored.read_text())
    assert list(record) == ["HumanEval/2", "HumanEval/0"]  # the configured order
    assert all(r["status"] in ("failed", "timeout", "error", "passed") and "completion" in r for r in record.values())
