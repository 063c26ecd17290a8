"""Registry versions and device aliases: moves and non-moves (real MLflow registry on sqlite)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tasks.review.fit import KvLayout
from tasks.review.promote import register_run
from tasks.review.registry import RegistryConfig, should_move
from tasks.tracking import client as tracking

OLD = {"kld_mean": "0.0040", "kld_mean_se": "0.0001", "decode_tps": "100", "decode_tps_sd": "2", "hardware_id": "h",
       "decode_tps_rel": "2.00", "decode_tps_rel_se": "0.02", "speed_anchor": "f16:0011"}


def test_alias_rule_moves_and_non_moves():
    assert should_move(None, OLD)[0]
    # kld within noise (0.0042 <= 0.0040 + 2 x sqrt(2) x 0.0001 = 0.00428), speed per anchor within
    # noise (-0.05 >= -0.057).
    assert should_move(OLD, {**OLD, "kld_mean": "0.0042", "decode_tps": "96", "decode_tps_rel": "1.95"})[0]
    # kld worse beyond noise: kept.
    move, reason = should_move(OLD, {**OLD, "kld_mean": "0.0050"})
    assert not move and reason.startswith("kld_mean 0.005 > 0.004")
    # slower per anchor beyond noise on the same host: kept; on another host, or beside another anchor,
    # speeds are not compared; a raw figure that moved with the host's drift (the ratio held) moves.
    move, reason = should_move(OLD, {**OLD, "decode_tps": "80", "decode_tps_rel": "1.6"})
    assert not move and reason.startswith("decode_tps per f16 anchor 1.6 < 2")
    assert should_move(OLD, {**OLD, "decode_tps_rel": "1.6", "hardware_id": "other"})[0]
    assert should_move(OLD, {**OLD, "decode_tps_rel": "1.6", "speed_anchor": "f16:2233"})[0]
    assert should_move(OLD, {**OLD, "decode_tps": "75"})[0]
    # Measured on another text: the figures are not compared (a far worse KLD there is no reason to keep).
    move, reason = should_move({**OLD, "eval_text": "t1:ctx512x24"}, {**OLD, "kld_mean": "0.5", "eval_text": "t2:ctx512x24"})
    assert move and reason.startswith("measured on another text (t2:ctx512x24 vs t1:ctx512x24): not compared")


def test_alias_rule_judges_kld_paired_over_chunks_where_both_logged_them():
    old_chunks = [0.004, 0.006, 0.002, 0.005, 0.003, 0.004, 0.007, 0.001]
    # 25 % worse on every chunk: the se rule (tiny kld_mean_se) and the pairing agree, kept
    worse = [k * 1.25 for k in old_chunks]
    move, reason = should_move(OLD, {**OLD, "kld_mean": "0.0050"}, chunk_kld=(old_chunks, worse))
    assert not move and "over paired chunks" in reason and "higher" in reason
    # the same mean lead, but chunk by chunk it is noise: moves, where the se rule (0.0050 > 0.00428) keeps
    noisy = [0.009, 0.001, 0.007, 0.002, 0.008, 0.001, 0.009, 0.003]
    move, reason = should_move(OLD, {**OLD, "kld_mean": "0.0050"}, chunk_kld=(old_chunks, noisy))
    assert move and "indistinguishable" in reason
    assert not should_move(OLD, {**OLD, "kld_mean": "0.0050"})[0]
    # too few chunks for an interval: the se rule
    assert not should_move(OLD, {**OLD, "kld_mean": "0.0050"}, chunk_kld=(old_chunks[:3], noisy[:3]))[0]


LAYOUT = KvLayout(architecture="llama", n_head_kv=[3] * 30, head_dim_k=64, head_dim_v=64,
                  swa_layers=[False] * 30, kv_layers=30).to_params()


def flow_run(client, experiment, *, kld: float, measurement: str, gate: str = "pass") -> str:
    parent = tracking.start_run(client, experiment, name="p", tags={})
    child = tracking.start_run(client, experiment, name="m-gguf-q8_0", parent_run_id=parent, tags={
        "slmforge.gate": gate, "slmforge.hardware_id": "h", "slmforge.artifact_key": "art",
        "slmforge.measurement_key": measurement})
    tracking.log_values(client, child, params={"format": "gguf", "quant": "Q8_0", "speed_n_ctx": "1032", **LAYOUT},
                        metrics={"kld_mean": kld, "kld_mean_se": 0.0001, "size_bytes": 140e6, "peak_rss_bytes": 300e6,
                                 "decode_tps": 100.0, "decode_tps_sd": 2.0})
    client.set_terminated(child)
    return parent


def test_versions_and_aliases_across_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = tracking.ensure_experiment(client, "reg", uri)
    config = RegistryConfig(devices=["laptop-8gb"])

    def register(**kwargs) -> list[str]:
        return register_run(client, experiment_id=experiment, parent_run_id=flow_run(client, experiment, **kwargs),
                            model_name="M", config=config)

    def alias() -> str:
        return str(client.get_model_version_by_alias("M-gguf", "laptop-8gb").version)

    lines = register(kld=0.0040, measurement="m1")
    assert lines[0] == "M-gguf v1: registered m-gguf-q8_0" and alias() == "1"
    assert lines[1].startswith("M-gguf@laptop-8gb: -> v1 (alias was unset)")
    version = client.get_model_version("M-gguf", "1")
    assert version.tags["kld_mean"] == "0.004" and version.tags["measurement_key"] == "m1"
    assert version.run_id and version.source.startswith("runs:/")
    # Same artefact, same stored measurement (a nightly run that reused it): no new version.
    assert register(kld=0.0040, measurement="m1")[0] == "M-gguf v1: already registered (m-gguf-q8_0)"
    # Re-measured and worse beyond noise: a new version, the alias stays.
    lines = register(kld=0.0050, measurement="m2")
    assert lines[0] == "M-gguf v2: registered m-gguf-q8_0" and alias() == "1"
    assert lines[1].startswith("M-gguf@laptop-8gb: stays on v1, not v2 (kld_mean 0.005 > 0.004")
    # Re-measured within noise: the alias moves to the newer version.
    lines = register(kld=0.0041, measurement="m3")
    assert alias() == "3" and "-> v3 (at least as good within noise" in lines[1]
    # A failed gate is never registered.
    assert register(kld=0.0001, measurement="m4", gate="fail") == []
    assert len(client.search_model_versions("name = 'M-gguf'")) == 3
