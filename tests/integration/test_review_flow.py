"""The review side inside the real flow (tiny model, real Prefect, MLflow, llama.cpp): a second run
reuses the store and says so, registers once, and fails its final state on a regression when asked."""

import re

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.review.watch import RegressionError
from tasks.store.gguf_header import read_gguf
from tasks.tracking import client as tracking
from tests.helpers import QUICK_EVAL, write_config


def _children(client, parent_id):
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.params["quant"]: r for r in runs}


def test_reuse_registry_and_regression_across_two_runs(prefect_harness, tmp_path, tiny_model_dir, tracking_uri):
    config = write_config(tmp_path / "c.yaml", {
        "name": "tiny-review", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(tiny_model_dir)},
        "formats": {"gguf": {"types": ["Q8_0"], "serve": {"enabled": False}}}, "evaluate": QUICK_EVAL, "gates": {"max_ppl_ratio": 10},
        "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"),
        "registry": {"devices": ["laptop-8gb"]},
    })
    first = pipeline(str(config))
    client = MlflowClient(tracking_uri)
    measured = _children(client, first["mlflow_run_id"])["Q8_0"]
    assert measured.data.tags["slmforge.reused"] == "false" and measured.data.params["model.n_layer"] == "2"
    # The converted GGUF is named after the model, not after the store folder it was converted from.
    f16 = _children(client, first["mlflow_run_id"])["F16"].data.tags["slmforge.artifact_path"]
    assert read_gguf(f16).fields["general.name"].contents() == "Tiny-Llama"
    # The tokens its quality was measured on: the text's sha256, the context and the chunks (QUICK_EVAL).
    assert re.fullmatch(r"[0-9a-f]{16}:ctx128x2", measured.data.params["eval_text"])
    assert first["regressions"] == [] and any(line.startswith("Tiny-Llama-gguf@laptop-8gb: -> v")
                                              for line in first["registry"])

    # The previous run claims a far better KLD (as if the quant had been better then): the same
    # figures served again from the store are now a regression beyond noise.
    tracking.log_values(client, measured.info.run_id, metrics={"kld_mean": 1e-9, "kld_mean_se": 1e-10})
    state = pipeline(str(config), fail_on_regression=True, return_state=True)
    assert state.is_failed()  # the final state the Prefect UI shows
    with pytest.raises(RegressionError, match="kld_mean"):
        state.result()

    second_parent = client.search_runs([measured.info.experiment_id], filter_string="tags.`slmforge.regressions` = '1'",
                                       order_by=["attributes.start_time ASC"])[0]
    reused = _children(client, second_parent.info.run_id)["Q8_0"]
    assert reused.data.tags["slmforge.reused"] == "true" and reused.data.metrics["reused"] == 1.0
    assert reused.data.tags["slmforge.measured_in_run"] == measured.info.run_id
    assert reused.data.tags["slmforge.regression"].startswith("tiny-llama-gguf-q8_0: kld_mean 1e-09 ->")
    # Same artefact and measurement: registered once, whatever the number of runs.
    versions = client.search_model_versions("name = 'Tiny-Llama-gguf'")
    assert len([v for v in versions if v.tags["quant"] == "Q8_0"]) == 1
