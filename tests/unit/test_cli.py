from typer.testing import CliRunner

from tasks.cli.display import print_summary
from tasks.cli.main import app
from tests.helpers import REPO, write_config

runner = CliRunner()


def test_validate_accepts_the_default_config():
    result = runner.invoke(app, ["validate", str(REPO / "configs" / "default.yaml")])
    assert result.exit_code == 0 and "valid" in result.output


def test_validate_lists_every_problem_and_fails(tmp_path):
    config = write_config(tmp_path / "c.yaml", {
        "name": "x", "model_name": "X", "source": {"kind": "local", "path": str(tmp_path / "absent")},
        "formats": {"gguf": {"types": ["Q4_K_M", "Q3_XL"]}}, "evaluate": {"repetitions": 1},
    })
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 1
    assert "gguf.types" in result.output and "Q3_XL" in result.output
    assert "evaluate.repetitions" in result.output


def test_run_refuses_an_unknown_sort_column_before_any_work():
    result = runner.invoke(app, ["run", str(REPO / "configs" / "default.yaml"), "--sort-by", "speed"])
    assert result.exit_code == 1 and "decode_tps" in result.output


def test_summary_sorts_by_a_metric_with_missing_values_last(capsys):
    rows = [{"format": "gguf", "quant": q, "kld_mean": k} for q, k in (("A", 0.3), ("B", None), ("C", 0.1))]
    summary = {"rows": rows, "packages": {}, "gate_failures": {}, "tracking_uri": "sqlite:///x.db",
               "mlflow_url": "u", "flow_run_id": "f", "source": "s", "tier": "micro"}
    print_summary(summary, "kld_mean")
    out = capsys.readouterr().out
    assert out.index("│ C") < out.index("│ A") < out.index("│ B")


def test_the_summary_shows_humaneval_with_its_intervals_and_verdict_against_the_f16(capsys):
    # The 1.5B's figures of 2026-12-03 (configs/humaneval-study.yaml, all 164 problems).
    f16 = {"format": "gguf", "quant": "F16", "humaneval_pass_at_1": 113 / 164, "humaneval_pass_at_1_low": 0.6145,
           "humaneval_pass_at_1_high": 0.7549, "humaneval_problems": 164, "humaneval_lost": 0, "humaneval_gained": 0,
           "humaneval_diff": 0.0, "humaneval_diff_low": -0.0087, "humaneval_diff_high": 0.0087,
           "humaneval_mcnemar_p": 1.0}
    q4 = {"format": "gguf", "quant": "Q4_K_M", "humaneval_pass_at_1": 108 / 164, "humaneval_pass_at_1_low": 0.5831,
          "humaneval_pass_at_1_high": 0.7267, "humaneval_problems": 164, "humaneval_lost": 8, "humaneval_gained": 3,
          "humaneval_diff": -5 / 164, "humaneval_diff_low": -0.0703, "humaneval_diff_high": 0.0091,
          "humaneval_mcnemar_p": 0.2266}
    worse = {**q4, "quant": "Q2_K", "humaneval_diff_high": -0.01}
    summary = {"rows": [f16, q4, worse, {"format": "onnx", "quant": "int4"}], "packages": {}, "gate_failures": {},
               "tracking_uri": "sqlite:///x.db", "mlflow_url": "u", "flow_run_id": "f", "source": "s", "tier": "small"}
    print_summary(summary)
    out = capsys.readouterr().out
    table = out[out.index("HumanEval pass@1"):]
    assert "68.9 %" in table and "[61.5, 75.5]" in table and "the f16 itself" in table
    q4_line = next(line for line in table.splitlines() if "Q4_K_M" in line)
    assert "65.9 %" in q4_line and "-3.0 pts" in q4_line and "[-7.0, +0.9]" in q4_line
    assert "indistinguishable" in q4_line
    assert "worse" in next(line for line in table.splitlines() if "Q2_K" in line)
    assert "int4" not in table  # no HumanEval figure: no row
