"""A fix in slmforge's own code changes the keys of what that code made; a run's MLflow record
and temporary folder never outlive the block that opened them."""

import sys

import pytest
from mlflow.tracking import MlflowClient

from tasks.tracking import report
from tasks.store.codeid import code_identity
from tasks.config import PipelineConfig


def test_editing_a_module_changes_its_code_identity(tmp_path, monkeypatch):
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "metric.py").write_text("def kld(): return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_identity("fakepkg.metric")
    code_identity.cache_clear()
    (package / "metric.py").write_text("def kld(): return 2  # the fix\n")
    assert code_identity("fakepkg.metric") != before
    assert code_identity("fakepkg") != before  # a package counts all its files
    code_identity.cache_clear()
    sys.modules.pop("fakepkg", None)


def test_a_failure_inside_a_tracked_run_closes_it_and_removes_its_folder(tracking_uri):
    config = PipelineConfig.model_validate({
        "name": "guarded", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"},
        "formats": ["gguf"], "tracking": {"tracking_uri": tracking_uri},
    })
    with pytest.raises(RuntimeError, match="boom"):
        with report.tracked_run(config, config_yaml="name: guarded\n", flow_run_id="0" * 32,
                                hardware={"hardware_id": "hw-test"}, versions={}) as ctx:
            folder = ctx.config_file.parent
            assert folder.is_dir()
            raise RuntimeError("boom")
    run = MlflowClient(tracking_uri).get_run(ctx.parent_run_id)
    assert run.info.status == "FAILED" and "boom" in run.data.tags["slmforge.error"]
    assert not folder.exists()
