"""Two real models of different architectures (SmolLM2-135M: llama; Gemma 3 270M: gemma3, from
chunk packages) through the pipeline in one suite flow, then one comparison across both: real
Prefect (temporary database), real MLflow (temporary SQLite store), real llama.cpp."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import QUICK_EVAL, REPO


@pytest.mark.e2e
def test_suite_of_two_models_compares_both(prefect_harness, tmp_path, tracking_uri):
    from flows.suite import suite

    cheap = {"evaluate": {**QUICK_EVAL, "prompt_suite": None}, "formats": {"gguf": {"types": ["Q8_0"]}, "onnx": None},
             "store_dir": str(tmp_path / "store"), "tracking": {"tracking_uri": tracking_uri}}
    suite_file = tmp_path / "two.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "two", "out_dir": str(tmp_path / "comparison"), "tracking_uri": tracking_uri,
        "models": [{"config": str(REPO / "configs" / "default.yaml"), "with": cheap},
                   {"config": str(REPO / "configs" / "gemma3-270m.yaml"), "with": cheap}],
    }))
    result = suite(str(suite_file))

    assert result["errors"] == {}
    rows = result["comparison"]["rows"]
    assert {(r["model"], r["quant"]) for r in rows} == {
        ("smollm2-135m-instruct", "F16"), ("smollm2-135m-instruct", "Q8_0"),
        ("gemma-3-270m", "F16"), ("gemma-3-270m", "Q8_0")}
    q8 = {r["model"]: r for r in rows if r["quant"] == "Q8_0"}
    assert all(0 < r["kld_mean"] < 0.05 and r["size_bytes"] > 0 for r in q8.values())  # measured, near-lossless
    assert q8["gemma-3-270m"]["size_bytes"] > q8["smollm2-135m-instruct"]["size_bytes"]  # 268M vs 135M params
    assert {r["tier"] for r in rows} == {"micro"}
    files = result["comparison"]["files"]
    assert {"csv", "md", "quality_vs_size", "quality_vs_decode"} <= set(files)
    table = (tmp_path / "comparison" / "two" / "comparison.md").read_text()
    assert "gemma-3-270m" in table and "smollm2-135m-instruct" in table

    client = MlflowClient(tracking_uri)
    comparison = client.get_run(result["comparison"]["mlflow_run_id"])
    logged = {a.path for a in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert {"comparison/quality_vs_size.png", "comparison/comparison.json"} <= logged
    for model, summary in result["models"].items():  # each pipeline run has its own figures
        parent = client.get_run(summary["mlflow_run_id"])
        assert parent.data.params["license"] == ("gemma" if "gemma" in model else "apache-2.0")
        assert "comparison/quality_vs_size.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    experiment = client.get_experiment_by_name("suite-two")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
