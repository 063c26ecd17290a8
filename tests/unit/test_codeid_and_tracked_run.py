"""A fix in slmforge's own code changes the keys of what that code made; a run's MLflow record
and temporary folder never outlive the block that opened them."""

import pytest
from mlflow.tracking import MlflowClient

from tasks.config import PipelineConfig
from tasks.evaluate.process import WORKER
from tasks.store import codeid
from tasks.tracking import report


@pytest.fixture
def fake_project(tmp_path, monkeypatch):
    """A project `fakepkg`: `step` imports `metric` (inside a function) and `helpers` (from its
    package); `unrelated` is imported by nobody."""
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "metric.py").write_text("def kld(): return 1\n")
    (package / "helpers.py").write_text("from fakepkg import metric\n")
    (package / "step.py").write_text("from fakepkg import helpers\n\n\ndef run():\n    from fakepkg.metric import kld\n\n"
                                     "    return kld()\n")
    (package / "unrelated.py").write_text("X = 1\n")
    monkeypatch.setattr(codeid, "ROOT", tmp_path)
    monkeypatch.setattr(codeid, "PROJECT_PACKAGES", ("fakepkg",))
    _clear()
    yield package
    _clear()


def _clear() -> None:
    codeid.code_identity.cache_clear()
    codeid.import_closure.cache_clear()


def test_the_code_identity_covers_the_import_closure(fake_project):
    assert set(codeid.import_closure("fakepkg.step")) == {"fakepkg.step", "fakepkg.helpers", "fakepkg.metric"}


def test_editing_an_imported_module_changes_the_key(fake_project):
    before = codeid.code_identity("fakepkg.step")
    _clear()
    (fake_project / "metric.py").write_text("def kld(): return 2  # the fix\n")
    assert codeid.code_identity("fakepkg.step") != before


def test_editing_an_unrelated_module_keeps_the_key(fake_project):
    before = codeid.code_identity("fakepkg.step")
    _clear()
    (fake_project / "unrelated.py").write_text("X = 2\n")
    assert codeid.code_identity("fakepkg.step") == before


def test_a_missing_module_is_an_error(fake_project):
    with pytest.raises(ValueError, match="fakepkg.nowhere"):
        codeid.code_identity("fakepkg.nowhere")


def test_a_plugin_outside_the_project_is_keyed_by_its_own_package(fake_project, tmp_path, monkeypatch):
    """A format registered from the user's own package (as tests/formats/hf_torch is): its runtime's
    closure is its own package's modules plus the project modules they import."""
    plugin = tmp_path / "plugins" / "myformat"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("")
    (plugin / "runtime.py").write_text("from myformat import shared\nfrom fakepkg import metric\n")
    (plugin / "shared.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    assert set(codeid.import_closure("myformat.runtime")) == {"myformat.runtime", "myformat.shared", "fakepkg.metric"}
    before = codeid.code_identity("myformat.runtime")
    _clear()
    (plugin / "shared.py").write_text("Y = 2  # the plugin's fix\n")
    assert codeid.code_identity("myformat.runtime") != before


def test_the_measurement_key_covers_every_module_the_worker_runs():
    """The modules once listed by hand for the measurement key, now found from the worker's imports."""
    closure = codeid.import_closure(WORKER)
    assert {"tasks.evaluate.worker", "tasks.evaluate.quality", "tasks.evaluate.metrics", "tasks.evaluate.reference",
            "tasks.evaluate.speed", "tasks.evaluate.prompt_suite"} <= set(closure)
    assert not any(name.startswith(("tasks.cli", "flows", "tasks.formats.onnx")) for name in closure)


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


def test_the_memory_planner_is_not_part_of_any_step_key(fake_project, monkeypatch):
    """A step core imports the planner to refuse work that would not fit; a new memory overhead must not
    turn the store cold (it did: every step re-ran after a change to tasks/plan/needs.py)."""
    (fake_project / "plan.py").write_text("OVERHEAD = 1\n")
    (fake_project / "step.py").write_text("from fakepkg import helpers, plan\n")
    monkeypatch.setattr(codeid, "ADMISSION_PACKAGES", ("fakepkg.plan",))
    _clear()
    assert set(codeid.import_closure("fakepkg.step")) == {"fakepkg.step", "fakepkg.helpers", "fakepkg.metric"}
    before = codeid.code_identity("fakepkg.step")
    _clear()
    (fake_project / "plan.py").write_text("OVERHEAD = 2  # refitted\n")
    assert codeid.code_identity("fakepkg.step") == before


@pytest.mark.parametrize("root", ["tasks.acquire.gguf_source", "tasks.acquire.dequantize_stream",
                                  "tasks.formats.gguf.convert", "tasks.formats.gguf.quantize",
                                  "tasks.formats.gguf.imatrix", "tasks.formats.onnx.build",
                                  "tasks.evaluate.measure", WORKER])
def test_no_real_step_key_holds_the_planner_or_the_host_locks(root):
    closure = codeid.import_closure(root)
    assert not [name for name in closure if name.startswith(("tasks.plan", "tasks.hosts"))]
    assert root in closure
