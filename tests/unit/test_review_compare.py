"""The comparison core: Pareto fronts by hand, the run table from MLflow's own search output,
figures with one panel per (hardware, tier), and the whole path on a real sqlite MLflow store."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tasks.review.compare import (
    CompareSelection, chunk_kld_by_run, model_of, pareto_mask, variant_table, with_pareto_flags,
)
from tasks.tracking import client as tracking


def test_pareto_front_by_hand():
    # size (lower better) and KLD (lower better): (1,5) (2,3) (3,4) (4,1) (2,3) duplicate, (5,5)
    size = pd.Series([1, 2, 3, 4, 2, 5])
    kld = pd.Series([5, 3, 4, 1, 3, 5])
    assert pareto_mask(size, kld).tolist() == [True, True, False, True, True, False]


def test_pareto_front_higher_is_better_and_missing_values():
    speed = pd.Series([10.0, 20.0, np.nan, 30.0])
    kld = pd.Series([0.01, 0.05, 0.0, 0.02])
    # faster is better: 30 tok/s at 0.02 beats 20 at 0.05; 10 at 0.01 is best on quality; NaN never on it
    assert pareto_mask(speed, kld, x_better="higher").tolist() == [True, False, False, True]


@pytest.mark.parametrize(("name", "fmt", "quant", "model"), [
    ("smollm2-135m-instruct-gguf-q4_k_m", "gguf", "Q4_K_M", "smollm2-135m-instruct"),
    ("gemma-3-270m-it-onnx-int4", "onnx", "int4", "gemma-3-270m-it"),
    ("renamed-by-hand", "gguf", "Q8_0", "renamed-by-hand"),
])
def test_model_name_from_the_variant_run_name(name, fmt, quant, model):
    assert model_of(name, fmt, quant) == model


def _raw_runs() -> pd.DataFrame:
    """Rows shaped like mlflow.search_runs' pandas output: a parent, children, another run."""
    def row(name, fmt, quant, hw, tier, kld, size, tps, start, parent="p1", status="FINISHED"):
        return {"run_id": f"r-{name}-{hw}-{start}", "experiment_id": "1", "experiment": "exp", "status": status,
                "start_time": pd.Timestamp(start, unit="s", tz="UTC"), "params.format": fmt, "params.quant": quant,
                "tags.mlflow.runName": name, "tags.slmforge.tier": tier, "tags.slmforge.hardware_id": hw,
                "tags.slmforge.gate": "pass", "tags.mlflow.parentRunId": parent, "metrics.kld_mean": kld,
                "metrics.size_bytes": size, "metrics.decode_tps": tps}
    rows = [
        row("a-gguf-q8_0", "gguf", "Q8_0", "hw1", "micro", 0.004, 145e6, 90, 100),
        row("a-gguf-q8_0", "gguf", "Q8_0", "hw1", "micro", 0.005, 145e6, 80, 50),  # older run of the same
        row("a-gguf-q4_0", "gguf", "Q4_0", "hw1", "micro", 0.25, 92e6, 150, 100),
        row("a-onnx-int4", "onnx", "int4", "hw1", "micro", 0.31, 203e6, 120, 100),
        row("b-gguf-q8_0", "gguf", "Q8_0", "hw1", "micro", 0.003, 290e6, 40, 100, parent="p2"),
        row("a-gguf-q8_0", "gguf", "Q8_0", "hw2", "micro", 0.004, 145e6, 200, 100, parent="p3"),
        row("a-gguf-q4_0", "gguf", "Q4_0", "hw1", "micro", 0.3, 92e6, 150, 200, status="RUNNING"),
        row("a-gguf-q4_0", "gguf", "Q4_0", "hw1", "micro", None, 92e6, 1, 300, status="KILLED"),  # partial
    ]
    parent = {"run_id": "p1", "experiment_id": "1", "experiment": "exp", "status": "FINISHED",
              "start_time": pd.Timestamp(1, unit="s", tz="UTC"), "params.format": None, "tags.mlflow.runName": "x"}
    return pd.DataFrame([*rows, parent])


def test_variant_table_keeps_newest_finished_children_and_selects():
    table = variant_table(_raw_runs(), CompareSelection())
    assert len(table) == 5  # parent, running, killed and the older Q8_0 of (a, hw1) dropped
    q8 = table[(table.model == "a") & (table.quant == "Q8_0") & (table.hardware_id == "hw1")]
    assert q8["kld_mean"].tolist() == [0.004]
    assert table[table.quant == "Q4_0"]["kld_mean"].tolist() == [0.25]  # not the killed run's partial figures
    assert set(table.model) == {"a", "b"}
    assert len(variant_table(_raw_runs(), CompareSelection(all_runs=True))) == 6
    only = variant_table(_raw_runs(), CompareSelection(hardware=["hw2"], formats=["gguf"]))
    assert only[["model", "hardware_id", "quant"]].values.tolist() == [["a", "hw2", "Q8_0"]]
    assert variant_table(_raw_runs(), CompareSelection(parent_run_ids=["p2"])).model.tolist() == ["b"]


def test_pareto_flags_are_per_hardware_panel():
    table = with_pareto_flags(variant_table(_raw_runs(), CompareSelection()), "kld_mean")
    flags = {(r.model, r.quant, r.hardware_id): (r.pareto_size, r.pareto_decode) for r in table.itertuples()}
    assert flags[("a", "Q4_0", "hw1")] == (True, True)  # smallest and fastest
    assert flags[("b", "Q8_0", "hw1")] == (True, True)  # best KLD of the panel
    assert flags[("a", "int4", "hw1")] == (False, False)  # bigger, worse and slower than Q4_0
    assert flags[("a", "Q8_0", "hw2")] == (True, True)  # alone on its hardware


def test_a_quality_lead_within_noise_keeps_no_variant_on_the_front():
    # b's Q8_0 has the best mean KLD of hw1 (0.003 vs a's 0.004), but chunk by chunk the two differ
    # by noise: b's lead is no lead, and a's Q8_0 (half the size, faster) beats it on both fronts.
    raw = _raw_runs()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.005, 12)
    raw["chunks.kld"] = None
    raw.at[0, "chunks.kld"] = list(0.004 + noise)
    raw.at[4, "chunks.kld"] = list(0.003 + noise[::-1])
    table = variant_table(raw, CompareSelection())
    plain = with_pareto_flags(table, "kld_mean")
    noisy = with_pareto_flags(table, "kld_mean", chunk_kld_by_run(raw))
    b = (table["model"] == "b").to_numpy()
    assert plain[b][["pareto_size", "pareto_decode"]].to_numpy().tolist() == [[True, True]]
    assert noisy[b][["pareto_size", "pareto_decode"]].to_numpy().tolist() == [[False, False]]
    # a lead every chunk shows stays a lead
    raw.at[4, "chunks.kld"] = list(0.003 + noise * 0.01)
    raw.at[0, "chunks.kld"] = list(0.004 + noise * 0.01)
    steady = with_pareto_flags(table, "kld_mean", chunk_kld_by_run(raw))
    assert steady[b][["pareto_size", "pareto_decode"]].to_numpy().tolist() == [[True, True]]


def test_each_domains_kld_is_a_column_beside_the_main_texts():
    raw = _raw_runs()
    raw["metrics.code/kld_mean"], raw["metrics.domains_kld_mean"] = 0.01, 0.02
    columns = list(variant_table(raw, CompareSelection()).columns)
    assert columns.index("kld_mean_high") < columns.index("code/kld_mean") < columns.index("kld_p99")
    assert "domains_kld_mean" in columns


def test_figures_have_one_panel_per_hardware_and_tier(tmp_path):
    from tasks.review.figures import comparison_figures, save_figures

    table = with_pareto_flags(variant_table(_raw_runs(), CompareSelection()), "kld_mean")
    figures = comparison_figures(table, "kld_mean")
    titles = sorted(ax.get_title() for ax in figures["quality_vs_size"].axes if ax.get_visible())
    assert titles == ["hardware hw1 · tier micro", "hardware hw2 · tier micro"]
    panel = next(ax for ax in figures["quality_vs_size"].axes if ax.get_title().startswith("hardware hw1"))
    assert panel.get_yscale() == "log"
    front = next(line for line in panel.get_lines() if line.get_label() == "Pareto front")
    assert list(front.get_xdata()) == [92.0, 145.0, 290.0]  # Q4_0, then a's Q8_0 and b's Q8_0 in MB
    legend = {t.get_text() for t in panel.get_legend().get_texts()}
    assert {"a · gguf", "a · onnx", "b · gguf"} <= legend
    paths = save_figures(figures, tmp_path)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.values())


def _log_variant(client, experiment_id, parent, name, fmt, quant, metrics):
    run_id = tracking.start_run(client, experiment_id, name=name, parent_run_id=parent,
                                tags={"slmforge.tier": "micro", "slmforge.hardware_id": "hw-test"})
    tracking.log_values(client, run_id, params={"format": fmt, "quant": quant}, metrics=metrics,
                        tags={"slmforge.gate": "pass"})
    client.set_terminated(run_id, "FINISHED")


def test_compare_on_a_real_store_logs_run_and_parent_figures(tmp_path):
    from tasks.review.publish import log_run_figures
    from tasks.tracking.mlflow_ui import EXPERIMENT_KIND_TAG
    from tasks.review.publish import compare, log_comparison

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, "exp", uri)
    parents = {}
    for model, scale in (("m1", 1.0), ("m2", 2.0)):
        parent = tracking.start_run(client, experiment_id, name=f"{model}-run", tags={})
        for quant, kld, size in (("Q8_0", 0.004, 145e6), ("Q4_0", 0.2, 92e6)):
            _log_variant(client, experiment_id, parent, f"{model}-gguf-{quant.lower()}", "gguf", quant,
                         {"kld_mean": kld / scale, "size_bytes": size * scale, "decode_tps": 100 / scale})
        parents[model] = parent
        time.sleep(0.01)
    selection = CompareSelection(tracking_uri=uri, experiments=["exp"])
    result = compare(selection, tmp_path / "out")
    assert sorted(result.table.model.unique()) == ["m1", "m2"] and len(result.table) == 4
    assert {p.name for p in result.files.values()} == {
        "comparison.csv", "comparison.md", "quality_vs_size.png", "quality_vs_decode.png"}
    assert "m2" in (tmp_path / "out" / "comparison.md").read_text()
    run_id = log_comparison(result, selection, client=client)
    logged = {a.path for a in client.list_artifacts(run_id, "comparison")}
    assert {"comparison/quality_vs_size.png", "comparison/comparison.json", "comparison/comparison.csv"} <= logged
    comparisons = client.get_experiment(result.experiment_id)
    assert comparisons.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    log_run_figures(client, uri, parents["m1"])  # the pipeline's hook: that run's own variants only
    on_parent = {a.path for a in client.list_artifacts(parents["m1"], "comparison")}
    assert "comparison/quality_vs_decode.png" in on_parent
    table = client.load_table(experiment_id, "comparison/comparison.json", run_ids=[parents["m1"]])
    assert set(table["model"]) == {"m1"}


def test_unknown_experiment_names_the_ones_there(tmp_path):
    from tasks.core.errors import UserError
    from tasks.review.compare import search_variant_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.ensure_experiment(MlflowClient(uri), "present", uri)
    with pytest.raises(UserError, match=r"no MLflow experiment named \['absent'\].*present"):
        search_variant_runs(CompareSelection(tracking_uri=uri, experiments=["absent"]))


def test_cli_prints_the_table_and_writes_files(tmp_path):
    from typer.testing import CliRunner

    from tasks.cli.main import app

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, "exp", uri)
    parent = tracking.start_run(client, experiment_id, name="run", tags={})
    _log_variant(client, experiment_id, parent, "m1-gguf-q8_0", "gguf", "Q8_0",
                 {"kld_mean": 0.004, "size_bytes": 145e6, "decode_tps": 90.0})
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", "--tracking-uri", uri, "--out", str(out), "--no-log"])
    assert result.exit_code == 0, result.output
    assert "m1" in result.output and "Q8_0" in result.output
    assert (out / "quality_vs_size.png").stat().st_size > 10_000
    empty = CliRunner().invoke(app, ["compare", "--tracking-uri", uri, "--out", str(out), "--model", "nope"])
    assert empty.exit_code == 1 and "no measured variant runs match models=['nope']" in " ".join(empty.output.split())
    bad = CliRunner().invoke(app, ["compare", "--tracking-uri", uri, "--quality", "speed"])
    assert bad.exit_code == 1 and "--quality" in bad.output


def test_two_evaluation_texts_are_two_panels_never_one_front():
    """The same variant measured on two texts (two Python releases' builtin text) keeps both rows,
    and each text has its own Pareto front."""
    raw = _raw_runs()
    raw["params.eval_text"] = "t1:ctx512x24"
    other = raw[raw["tags.mlflow.runName"] == "b-gguf-q8_0"].copy()
    other["params.eval_text"], other["run_id"], other["metrics.kld_mean"] = "t2:ctx512x24", "r-b-t2", 0.5
    table = with_pareto_flags(variant_table(pd.concat([raw, other]), CompareSelection()), "kld_mean")
    b_rows = table[(table.model == "b")]
    assert sorted(b_rows.eval_text) == ["t1:ctx512x24", "t2:ctx512x24"]
    # Alone on its text, b's worse KLD is still its panel's front; on t1 it is unchanged.
    assert b_rows.set_index("eval_text").loc["t2:ctx512x24", "pareto_size"]
    assert table[(table.model == "a") & (table.quant == "Q4_0")].pareto_size.tolist() == [True]
    assert variant_table(_raw_runs(), CompareSelection()).eval_text.unique().tolist() == ["unrecorded"]
    from tasks.review.figures import comparison_figures

    titles = {ax.get_title() for ax in comparison_figures(table, "kld_mean")["quality_vs_size"].axes if ax.get_visible()}
    assert {"hardware hw1 · tier micro · text t1:ctx512x24", "hardware hw1 · tier micro · text t2:ctx512x24"} <= titles
