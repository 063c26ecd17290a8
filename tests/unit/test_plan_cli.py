"""`slmforge plan` on the shipped default config, and `slmforge run` refusing a run that cannot fit."""

from __future__ import annotations

from typer.testing import CliRunner

from tasks.cli.main import app
from tasks.plan.limits import MemoryLimit
from tasks.plan.records import RunRecord, StepRecord, save_run_record
from tests.helpers import REPO, write_config

runner = CliRunner()


def _default_in(tmp_path):
    return write_config(tmp_path / "c.yaml", {"include": [str(REPO / "configs" / "default.yaml")],
                                              "store_dir": str(tmp_path / "store")})


def test_plan_of_the_default_config_prices_every_step_and_the_medium_tier(tmp_path):
    result = runner.invoke(app, ["plan", str(_default_in(tmp_path))])
    assert result.exit_code == 0, result.output
    out = result.output
    for step in ("acquire", "convert", "build gguf Q4_K_M", "build onnx int4", "reference pass", "measure gguf F16",
                 "serve gguf Q8_0", "total"):
        assert step in out, step
    assert "0.13B weights" in out and "vocabulary 49152" in out  # read from the GGUF's header
    assert "medium 14B" in out and "medium 30B" in out
    assert "this run: every step fits this host" in out
    assert "built-in default" in out  # no run recorded in this store yet


def test_plan_learns_from_a_recorded_run_in_the_store(tmp_path):
    from tasks.hosts.hardware import hardware_facts

    config = _default_in(tmp_path)
    save_run_record(tmp_path / "store", RunRecord(hardware_id=hardware_facts()["hardware_id"], model="m",
                                                  n_weights=134_515_008, steps=[
        StepRecord(step="acquire", wall_s=20.0, peak_rss_bytes=10**9, units=0.134515008)]))
    result = runner.invoke(app, ["plan", str(config)])
    assert result.exit_code == 0, result.output
    assert "acquire this host (1 steps)" in result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("│ acquire"))
    assert "20 s" in row  # the recorded run's rate, on the same model


def test_run_refuses_before_any_work_when_a_step_cannot_fit(tmp_path, monkeypatch):
    tiny = MemoryLimit(available_bytes=100 * 2**20, host_available_bytes=100 * 2**20)
    monkeypatch.setattr("tasks.plan.host.read_memory_limit", lambda: tiny)
    monkeypatch.setattr("flows.pipeline.pipeline", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    config = write_config(tmp_path / "c.yaml", {  # plain types: no llama.cpp tool needed to validate
        "include": [str(REPO / "configs" / "default.yaml")], "store_dir": str(tmp_path / "store"),
        "formats": {"gguf": {"types": ["Q8_0"]}, "onnx": None}})
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2, result.output
    assert "Not started: this run would not fit this host" in result.output
    assert "acquire: needs" in result.output and "slmforge plan CONFIG" in result.output
