"""Honest records: figures served from the store are tagged reused, with the run and time that measured them.

Real MLflow (a sqlite store in a temporary folder) and the real tracking hook (report.open_variant_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.acquire import AcquiredModel
from tasks.review import records
from tasks.tracking import client as tracking, report
from tasks.variants import Variant, VariantOutcome


@pytest.fixture
def ctx(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = tracking.ensure_experiment(client, "records", uri)
    parent = tracking.start_run(client, experiment, name="parent", tags={})
    config_file = tmp_path / "cfg" / "resolved_config.yaml"
    config_file.parent.mkdir()
    config_file.write_text("name: x\n")
    return report.RunContext(client, uri, experiment, parent, config_file)


MODEL = AcquiredModel(hf_dir=Path("."), source="gguf:pkg/file", source_revision="abc", architecture="LlamaForCausalLM",
                      param_count=1, tier="micro", license=None, manifest={}, identity="x")


def stored_measurement(store: Path, *, with_time: bool = True) -> dict:
    folder = store / "evaluate" / "kkkk"
    folder.mkdir(parents=True)
    if with_time:
        (folder / "measured_at.txt").write_text("2026-11-25T20:00:00+00:00")
    return records.measurement_record(folder, "k" * 64)


def log(ctx, measurement, *, reused: bool) -> dict:
    variant = Variant(name="m-gguf-q8_0", format="gguf", quant="Q8_0", path=Path("m.gguf"), key="v")
    outcome = VariantOutcome(variant=variant, metrics={"kld_mean": 0.01}, reused=reused, measurement=measurement)
    run_id = report.open_variant_run(ctx, outcome, model=MODEL, hardware_id="h", versions={},
                                     reference="f16 of the source weights")
    return {"id": run_id, **ctx.client.get_run(run_id).data.tags, "reused_metric": ctx.client.get_run(run_id).data.metrics["reused"]}


def test_first_measurement_fresh_then_reuse_names_it(ctx, tmp_path):
    measurement = stored_measurement(tmp_path / "store")
    first = log(ctx, measurement, reused=False)
    assert first["slmforge.reused"] == "false" and first["reused_metric"] == 0.0
    assert "slmforge.measured_in_run" not in first
    second = log(ctx, measurement, reused=True)
    assert second["slmforge.reused"] == "true" and second["reused_metric"] == 1.0
    assert second["slmforge.measured_in_run"] == first["id"]
    assert second["slmforge.measured_at"] == "2026-11-25T20:00:00+00:00"
    assert second["slmforge.measured_in_experiment"] == ctx.experiment_id
    # A third run does not overwrite the origin: it still names the first one.
    log(ctx, measurement, reused=False)
    assert log(ctx, measurement, reused=True)["slmforge.measured_in_run"] == first["id"]


def test_reuse_without_an_origin_file_falls_back_to_the_tracking_store(ctx, tmp_path):
    measurement = stored_measurement(tmp_path / "store", with_time=False)  # stored before times were written
    first = log(ctx, measurement, reused=False)
    records.origin_path(measurement).unlink()
    reused = log(ctx, measurement, reused=True)
    assert reused["slmforge.measured_in_run"] == first["id"]
    assert reused["slmforge.measured_at"].startswith("20")  # the store folder's time, ISO 8601 UTC


def test_reuse_with_no_trace_of_the_original_says_so(ctx, tmp_path):
    reused = log(ctx, stored_measurement(tmp_path / "store"), reused=True)
    assert reused["slmforge.reused"] == "true"
    assert reused["slmforge.measured_in_run"].startswith("unknown")
