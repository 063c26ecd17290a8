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
