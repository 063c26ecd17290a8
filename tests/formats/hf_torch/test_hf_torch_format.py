"""A format added from tests/ alone goes through the whole flow: build, measure against the
stored f16 reference, gate, package, MLflow child run. Nothing outside this folder knows it."""

import os

from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.formats import register_format
from tests.helpers import QUICK_EVAL, REPO, write_config


def test_a_format_registered_from_tests_runs_through_the_flow(prefect_harness, tmp_path, tiny_model_dir,
                                                                 tracking_uri, monkeypatch):
    register_format("hf-torch", "tests.formats.hf_torch")
    # The measurement worker is a fresh interpreter: it must be able to import tests.formats.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    config = write_config(tmp_path / "c.yaml", {
        "name": "plugin-format", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"]}, "hf-torch": {"dtype": "float32"}},
        "evaluate": {**QUICK_EVAL, "prompt_suite": None}, "tracking": {"tracking_uri": tracking_uri},
        "store_dir": str(tmp_path / "store"),
    })
    summary = pipeline(str(config))

    rows = {(r["format"], r["quant"]): r for r in summary["rows"]}
    torch_row = rows[("hf-torch", "float32")]
    assert torch_row["gate"] == "pass"
    # The same f16 weights in float32 through PyTorch: next to no divergence from the f16 GGUF.
    assert torch_row["kld_mean"] < 1e-3 and torch_row["top1_agreement"] > 0.95
    assert abs(torch_row["perplexity"] / rows[("gguf", "F16")]["perplexity"] - 1) < 0.01
    assert torch_row["decode_tps"] > 0 and torch_row["peak_rss_bytes"] > 0
    assert "tiny-llama-hf-torch-float32" in summary["packages"]

    client = MlflowClient(tracking_uri)
    children = client.search_runs([summary["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'")
    formats = {run.data.params["format"] for run in children}
    assert formats == {"gguf", "hf-torch"}
