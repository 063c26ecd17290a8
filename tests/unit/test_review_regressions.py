"""Regressions beyond the recorded noise are found; changes within it are not (rule: tasks.review.regressions).
Speed is judged per anchor (the variant's figure over the f16's, timed side by side), never on a
burst's sd: host drift moves both and cancels."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.review.regressions import RegressionConfig, changed_versions, find_regressions
from tasks.review.watch import check_regressions
from tasks.tracking import client as tracking, report
from tasks.variants import Variant, VariantOutcome

CONFIG = RegressionConfig()  # 2 sigmas, and at least 5 % of the old value
ANCHOR = {"speed_anchor": "f16:00112233aabbccdd"}
BEFORE = {"kld_mean": 0.0040, "kld_mean_se": 0.0001, "perplexity": 15.0, "perplexity_se": 0.5,
          "top1_agreement": 0.95, "top1_agreement_se": 0.003,
          "decode_tps": 100.0, "decode_tps_sd": 2.0, "decode_tps_rel": 2.00, "decode_tps_rel_se": 0.02,
          "decode_tps_anchor": 50.0,
          "decode_tps_d512": 80.0, "decode_tps_d512_sd": 1.0, "decode_tps_d512_rel": 1.90, "decode_tps_d512_rel_se": 0.02,
          "ttft_ms": 20.0, "ttft_ms_sd": 0.5, "ttft_ms_rel": 0.50, "ttft_ms_rel_se": 0.01,
          "eval_text": "0123456789abcdef:ctx512x24", **ANCHOR}
TEXT = {"eval_text": BEFORE["eval_text"]}
# Time to first token is listed, never judged: its ~10 ms bursts moved 15 % between two runs of one commit.
TTFT = "v: ttft_ms (not judged: a first-token burst (~10 ms) is too short for its ratio to the anchor to be trusted)"


def test_a_synthetic_regression_is_detected():
    # kld 0.0040 -> 0.0050: +0.0010 > 2 x sqrt(0.0001^2 + 0.0001^2) = 0.00028 and > 5 % of 0.0040.
    # decode per anchor 2.00 -> 1.60: 0.40 > 2 x sqrt(0.02^2 + 0.02^2) = 0.057 and > 5 % of 2.00.
    after = {**BEFORE, "kld_mean": 0.0050, "decode_tps": 80.0, "decode_tps_rel": 1.60}
    changes, unjudged = find_regressions({"v": BEFORE}, {"v": after}, CONFIG)
    assert {(c.figure, c.kind) for c in changes} == {("kld_mean", "quality"), ("decode_tps_rel", "speed")}
    assert unjudged == [TTFT]
    assert changes[0].describe().startswith("v: kld_mean 0.004 -> 0.005")


def test_changes_within_noise_or_for_the_better_are_ignored():
    # kld +0.0002 < 0.00028 noise; perplexity +0.6 < 2 x sqrt(0.5^2 + 0.5^2) = 1.41; decode per anchor
    # -0.05 < 0.057; top1 better; ttft faster; a depth figure improved.
    after = {**BEFORE, "kld_mean": 0.0042, "perplexity": 15.6, "decode_tps_rel": 1.95, "top1_agreement": 0.99,
             "ttft_ms_rel": 0.25, "decode_tps_d512_rel": 2.1}
    assert find_regressions({"v": BEFORE}, {"v": after}, CONFIG) == ([], [TTFT])


def test_a_domains_quality_is_judged_like_the_main_texts_paired_over_its_own_chunks():
    from tasks.core.intervals import CHUNK_SERIES

    code = {"code/kld_mean": 0.010, "code/kld_mean_se": 0.001, "code/perplexity": 3.0, "code/perplexity_se": 0.1,
            "code/top1_agreement": 0.9, "code/top1_agreement_se": 0.01}
    before = {**BEFORE, **code, CHUNK_SERIES: {"code/kld": [0.010, 0.012, 0.008, 0.011, 0.009, 0.010]}}
    # the code domain alone got worse: +30 % on every one of its chunks (the main text held)
    after = {**before, "code/kld_mean": 0.013, CHUNK_SERIES: {"code/kld": [k * 1.3 for k in before[CHUNK_SERIES]["code/kld"]]}}
    changes, _ = find_regressions({"v": before}, {"v": after}, CONFIG)
    assert [(c.figure, c.kind) for c in changes] == [("code/kld_mean", "quality")] and "higher" in changes[0].interval
    # a domain's figure without its series falls back to its own se: within noise, nothing
    after = {**BEFORE, **code, "code/kld_mean": 0.0115}
    assert find_regressions({"v": {**BEFORE, **code}}, {"v": after}, CONFIG) == ([], [TTFT])


def test_host_drift_is_no_regression_but_a_variant_slowed_alone_is():
    """The whole host 25 % slower (135 -> 104 tok/s, as seen between two runs of one file here): the
    anchor slowed alike, the ratio held, nothing is reported. The variant alone slowed: caught."""
    drifted = {**BEFORE, "decode_tps": 75.0, "decode_tps_anchor": 37.5, "decode_tps_rel": 2.01}
    assert find_regressions({"v": BEFORE}, {"v": drifted}, CONFIG) == ([], [TTFT])
    # A first token twice as slow per anchor: listed as not judged, not a regression.
    assert find_regressions({"v": BEFORE}, {"v": {**BEFORE, "ttft_ms_rel": 1.0}}, CONFIG) == ([], [TTFT])
    slowed = {**BEFORE, "decode_tps": 75.0, "decode_tps_anchor": 50.0, "decode_tps_rel": 1.50}
    changes, _ = find_regressions({"v": BEFORE}, {"v": slowed}, CONFIG)
    assert [(c.figure, c.old, c.new) for c in changes] == [("decode_tps_rel", 2.0, 1.5)]


def test_speed_without_the_same_anchor_is_not_judged_and_said_so():
    """Raw figures alone (an old run, the f16 base itself, another f16) cannot tell drift from a change."""
    raw = {k: v for k, v in BEFORE.items() if "_rel" not in k and k != "speed_anchor"}
    changes, unjudged = find_regressions({"v": raw}, {"v": {**BEFORE, "decode_tps": 50.0, "decode_tps_rel": 1.0}}, CONFIG)
    assert changes == [] and "v: decode_tps (not timed beside the same f16 anchor in both runs" in unjudged[0]
    other = {**BEFORE, "speed_anchor": "f16:ffffffffffffffff", "decode_tps_rel": 1.0}
    assert find_regressions({"v": BEFORE}, {"v": other}, CONFIG)[0] == []


def test_beyond_sigma_but_below_the_relative_floor_is_ignored():
    # A few lucky rounds: se 0.001 each, 2.00 -> 1.94 per anchor is 0.06 > 0.0028 noise, but under 5 % of 2.
    before = {"decode_tps": 100.0, "decode_tps_rel": 2.00, "decode_tps_rel_se": 0.001, **ANCHOR}
    after = {"decode_tps": 97.0, "decode_tps_rel": 1.94, "decode_tps_rel_se": 0.001, **ANCHOR}
    assert find_regressions({"v": before}, {"v": after}, CONFIG)[0] == []
    assert len(find_regressions({"v": before}, {"v": after}, RegressionConfig(min_relative_change=0))[0]) == 1


def test_a_figure_without_noise_is_not_judged_and_said_so():
    changes, unjudged = find_regressions({"v": {"kld_mean": 0.001, **TEXT}},
                                         {"v": {"kld_mean": 0.1, "kld_mean_se": 0.0, **TEXT}}, CONFIG)
    assert changes == [] and unjudged == ["v: kld_mean (no kld_mean_se)"]


def test_quality_measured_on_another_text_is_not_judged_and_said_so():
    """Another Python ships another builtin text: its KLD is no regression, but speed still counts."""
    after = {**BEFORE, "kld_mean": 0.0500, "decode_tps_rel": 1.6, "eval_text": "fedcba9876543210:ctx512x24"}
    changes, unjudged = find_regressions({"v": BEFORE}, {"v": after}, CONFIG)
    assert [(c.figure, c.kind) for c in changes] == [("decode_tps_rel", "speed")]
    assert unjudged == ["v: quality figures (measured on another text: 0123456789abcdef:ctx512x24 before, "
                        "fedcba9876543210:ctx512x24 now)", TTFT]
    # A previous run with no record of its text is not taken for the same text.
    unrecorded = {k: v for k, v in BEFORE.items() if k != "eval_text"}
    changes, unjudged = find_regressions({"v": unrecorded}, {"v": {**BEFORE, "kld_mean": 0.05}}, CONFIG)
    assert changes == [] and "unrecorded before" in unjudged[0]


def test_changed_tool_versions_are_named():
    assert changed_versions({"llama-cpp-python": "0.3.35", "torch": "2.9"},
                            {"llama-cpp-python": "0.3.36", "torch": "2.9", "gguf": "0.19"}) == [
        "gguf absent -> 0.19", "llama-cpp-python 0.3.35 -> 0.3.36"]


def _flow_run(client, uri, experiment, config_file: Path, metrics: dict, versions: dict):
    """What the flow logs for one run of one variant: a parent, a child with figures."""
    parent = tracking.start_run(client, experiment, name="p", tags={"slmforge.hardware_id": "hw"})
    tracking.log_values(client, parent, params={f"version.{k}": v for k, v in versions.items()})
    ctx = report.RunContext(client, uri, experiment, parent, config_file)
    child = tracking.start_run(client, experiment, name="m-q8", parent_run_id=parent, tags={})
    tracking.log_values(client, child, metrics=metrics, params={"eval_text": metrics["eval_text"],
                                                                "speed_anchor": metrics["speed_anchor"]})
    outcome = VariantOutcome(variant=Variant(name="m-q8", format="gguf", quant="Q8_0", path=Path("x"), key="k"),
                             metrics=metrics, mlflow_run_id=child)
    result = check_regressions(ctx, [outcome], CONFIG, hardware_id="hw", versions=versions)
    client.set_terminated(child)
    client.set_terminated(parent)
    return parent, child, result


def test_the_previous_run_of_the_same_config_is_found_and_both_levels_tagged(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = tracking.ensure_experiment(client, "reg", uri)
    config_file = tmp_path / "resolved_config.yaml"
    config_file.write_text("name: a\n")
    first, _, result = _flow_run(client, uri, experiment, config_file, BEFORE, {"llama-cpp-python": "0.3.35"})
    assert result.previous_run_id is None
    other = tmp_path / "other.yaml"
    other.write_text("name: b\n")  # another config: never compared with
    _flow_run(client, uri, experiment, other, {**BEFORE, "kld_mean": 1.0}, {"llama-cpp-python": "0.3.35"})
    parent, child, result = _flow_run(client, uri, experiment, config_file, {**BEFORE, "kld_mean": 0.0050},
                                      {"llama-cpp-python": "0.3.36"})
    assert result.previous_run_id == first and [c.figure for c in result.changes] == ["kld_mean"]
    tags = client.get_run(parent).data.tags
    assert tags["slmforge.regressions"] == "1" and tags["slmforge.previous_run"] == first
    assert tags["slmforge.versions_changed"] == "llama-cpp-python 0.3.35 -> 0.3.36"
    assert client.get_run(child).data.tags["slmforge.regression"].startswith("m-q8: kld_mean 0.004 -> 0.005")


def test_config_identity_ignores_sections_that_shape_no_figure():
    from tasks.review.watch import config_identity

    base = "name: a\nevaluate: {max_chunks: 2}\n"
    assert config_identity(base) == config_identity(base + "registry: {enabled: false}\ntracking: {experiment: x}\n")
    assert config_identity(base) != config_identity("name: a\nevaluate: {max_chunks: 24}\n")


def test_a_figure_that_moved_with_the_build_alone_is_flagged_either_way(tmp_path):
    """Same config, same text, a new llama.cpp: a KLD that moved beyond noise, even for the better,
    is the build's doing and is named; within noise it is not."""
    from tasks.review.regressions import moved_with_build

    better = {**BEFORE, "kld_mean": 0.0030}  # -0.0010, beyond 2 x sqrt(2) x 0.0001
    moves = moved_with_build({"v": BEFORE}, {"v": better}, CONFIG)
    assert [(m.figure, m.old, m.new) for m in moves] == [("kld_mean", 0.004, 0.003)]
    assert moved_with_build({"v": BEFORE}, {"v": {**BEFORE, "kld_mean": 0.0041}}, CONFIG) == []
    other_text = {**better, "eval_text": "fedcba9876543210:ctx512x24"}
    assert moved_with_build({"v": BEFORE}, {"v": other_text}, CONFIG) == []

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = tracking.ensure_experiment(client, "reg", uri)
    config_file = tmp_path / "resolved_config.yaml"
    config_file.write_text("name: a\n")
    _flow_run(client, uri, experiment, config_file, BEFORE, {"llama-cpp-python": "0.3.35"})
    parent, child, result = _flow_run(client, uri, experiment, config_file, better, {"llama-cpp-python": "0.3.36"})
    assert result.changes == [] and [m.figure for m in result.build_moves] == ["kld_mean"]
    assert client.get_run(child).data.tags["slmforge.build_moved"].startswith("m-q8: kld_mean 0.004 -> 0.003")
    assert client.get_run(parent).data.tags["slmforge.build_moves"].startswith("m-q8: kld_mean")
    # The same tools: nothing is put down to the build.
    _, _, same = _flow_run(client, uri, experiment, config_file, BEFORE, {"llama-cpp-python": "0.3.36"})
    assert same.build_moves == []
