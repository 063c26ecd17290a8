"""The real flow on a tiny model: real Prefect (temporary database), real MLflow (temporary
SQLite store), real llama.cpp conversion, quantization and measurement, HumanEval on two problems
(real completions run in the real sandbox)."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.evaluate.humaneval.kept import KeptCompletions
from tasks.evaluate.humaneval.sandbox import isolation_problem
from tasks.plan.records import load_run_records
from tasks.tracking.client import CONTRACT_METRICS, read_series
from tests.helpers import QUICK_EVAL, tools_required, write_config

# HumanEval never runs a program unsandboxed: off on a host that cannot sandbox (CI must be able to).
HUMANEVAL = ({"problems": {"task_ids": ["HumanEval/2", "HumanEval/0"]}, "max_tokens": 24}
             if isolation_problem() is None or tools_required() else None)

SECRET = "hf_" + "fake0token" * 3  # assembled: no credential-shaped literal in the source


@pytest.fixture
def config_for(tmp_path, tiny_model_dir, tracking_uri):
    def make(types, **extra):
        return write_config(tmp_path / f"c-{'-'.join(types)}.yaml", {
            "name": "tiny-flow", "model_name": "Tiny-Llama", # ONNX: test_onnx_path.py
            "source": {"kind": "local", "path": str(tiny_model_dir)},
            "formats": {"gguf": {"types": types, "serve": {"enabled": False}}},
            "evaluate": {**QUICK_EVAL, "humaneval": HUMANEVAL},
            "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"), **extra,
        })
    return make


def _children(client, parent_id):
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    return {r.data.params["quant"]: r for r in runs}


def test_flow_tracks_every_variant_and_reruns_from_cache(prefect_harness, config_for, tracking_uri, monkeypatch,
                                                        tmp_path):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    gates = {"per_quant": {"Q4": {"max_kld_mean": 1e-9}}}  # Q4_0 of a random model must fail this
    first = pipeline(str(config_for(["Q8_0", "Q4_0"], gates=gates)))

    client = MlflowClient(tracking_uri)
    parent = client.get_run(first["mlflow_run_id"])
    assert parent.data.tags["prefect.flow_run_id"] == first["flow_run_id"]
    children = _children(client, first["mlflow_run_id"])
    assert set(children) == {"F16", "Q8_0", "Q4_0"}
    q8 = children["Q8_0"]
    assert {"size_bytes", "bits_per_weight", "perplexity", "kld_mean", "kld_p99", "top1_agreement",
            "delta_p_rms", "prefill_tps", "decode_tps", "ttft_ms", "load_s", "peak_rss_bytes"} <= set(q8.data.metrics)
    assert set(q8.data.metrics) & set(CONTRACT_METRICS)
    assert q8.data.params["format"] == "gguf" and q8.data.params["source"].startswith("local:")
    assert q8.data.params["source_revision"] and "version.llama-cpp-python" in q8.data.params
    assert q8.data.tags["slmforge.tier"] == "micro" and q8.data.tags["slmforge.hardware_id"].startswith("hw-")
    assert q8.data.tags["slmforge.gate"] == "pass"
    artifacts = {a.path for a in client.list_artifacts(q8.info.run_id)}
    assert {"README.md", "Modelfile", "slmforge-manifest.json", "resolved_config.yaml"} <= artifacts
    assert {"task_score", "golden_agreement", "decode_read_bytes_per_s", "perplexity_ratio"} <= set(q8.data.metrics)
    # A tiny model's weights sit in cache: above the DRAM limit, so no efficiency is claimed.
    over = q8.data.metrics["decode_efficiency_over_limit"]
    assert ("decode_efficiency" in q8.data.metrics) == (over == 0.0)
    assert 0 <= q8.data.metrics["golden_agreement"] <= 1

    q4 = children["Q4_0"]
    assert q4.data.tags["slmforge.gate"] == "fail" and "kld_mean" in q4.data.tags["slmforge.gate_reasons"]
    assert "smollm" not in str(first["packages"]) and len(first["packages"]) == 2  # F16 and Q8_0 only

    for run in [parent, *children.values()]:
        assert SECRET not in str(run.data.params) + str(run.data.tags)
    if HUMANEVAL:
        check_humaneval(client, children, tmp_path)  # the store config_for writes to
    # The run's record carries this host's probe: another host's plan scales these times by it.
    (kept_record,) = load_run_records(tmp_path / "store")
    assert kept_record.probe is not None and kept_record.probe.decode_tps > 0 and kept_record.steps

    second = pipeline(str(config_for(["Q8_0", "Q4_0"], gates=gates)))
    assert all(second["reused"].values()), second["reused"]
    assert second["rows"] == first["rows"]

    third = pipeline(str(config_for(["Q8_0", "Q5_0"], gates=gates)))
    assert third["reused"] == {
        "tiny-llama-gguf-f16": True, "tiny-llama-gguf-q8_0": True, "tiny-llama-gguf-q5_0": False,
    }
    if HUMANEVAL:  # a smaller subset: every problem kept, none decoded (that failed each variant's record)
        fourth = pipeline(str(config_for(["Q8_0"], evaluate={**QUICK_EVAL, "humaneval": {
            **HUMANEVAL, "problems": {"task_ids": ["HumanEval/0"]}}})))
        assert not fourth["errors"] and len(fourth["rows"]) == 2
        steps = [s for r in load_run_records(tmp_path / "store") for s in r.steps if s.step.startswith("humaneval")]
        assert steps and steps[-1].reused  # kept generations: nothing for the cost model to learn


def check_humaneval(client, children, tmp_path: Path) -> None:
    """Every GGUF variant: pass@1 in its interval, each problem's result in order, flips against the f16."""
    for quant, run in children.items():
        metrics = run.data.metrics
        assert metrics["humaneval_problems"] == 2, quant
        assert metrics["humaneval_pass_at_1_low"] <= metrics["humaneval_pass_at_1"] <= metrics["humaneval_pass_at_1_high"]
        passes = read_series(client, run.info.run_id, "problem_humaneval_pass")
        assert len(passes) == 2 and metrics["humaneval_pass_at_1"] == sum(passes) / 2
    q8 = children["Q8_0"]  # a random model passes neither problem, so none flips
    assert q8.data.metrics["humaneval_lost"] + q8.data.metrics["humaneval_gained"] == 0
    assert q8.data.tags["slmforge.humaneval_lost_ids"] == "-" and "humaneval_mcnemar_p" in q8.data.metrics
    stored = next((tmp_path / "store" / "evaluate").glob("*/humaneval.json"))
    record = json.loads(stored.read_text())
    assert list(record) == ["HumanEval/2", "HumanEval/0"]  # the configured order, each with its completion
    assert all(r["status"] in ("failed", "timeout", "error", "passed") and "completion" in r and "generated" in r
               for r in record.values())
    # Each variant's completions were kept per problem as decoded (a stopped study resumes from them).
    kept = sorted((tmp_path / "store" / "humaneval-completions").glob("*/HumanEval_*.json"))
    assert len(kept) == 2 * len(children)
    assert any(KeptCompletions(path.parent).get("HumanEval/2").text == record["HumanEval/2"]["generated"]
               for path in kept)  # the raw generation is kept; its completion is extracted on every scoring
