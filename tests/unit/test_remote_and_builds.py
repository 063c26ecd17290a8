"""Pure parts of measuring on other machines and building on Dask: names, arrival checks, runner choice."""

import pytest

from tasks.core.errors import CorruptArtifactError, UserError
from tasks.remote.build_runner import BuildRunnerConfig, uses_dask
from tasks.remote.submit import check_class_names, manifest_folder, remote_variant, verify_arrival
from tasks.store.artifacts import stored_step


def test_class_names_must_name_a_work_pool():
    assert check_class_names(["cpu-avx2", "cuda-h100"]) == []
    (problem,) = check_class_names(["CPU avx2"])
    assert "'CPU avx2'" in problem and "cpu-avx2" in problem


def test_a_config_lists_each_class_once():
    from tasks.config import PipelineConfig

    base = {"name": "x", "model_name": "X", "source": {"kind": "local", "path": "/tmp"}}
    assert PipelineConfig.model_validate({**base, "hardware": ["cpu-a", "cpu-b"]}).hardware == ["cpu-a", "cpu-b"]
    with pytest.raises(ValueError, match="listed twice"):
        PipelineConfig.model_validate({**base, "hardware": ["cpu-a", "cpu-a"]})
    with pytest.raises(ValueError, match="not a valid class name"):
        PipelineConfig.model_validate({**base, "hardware": ["cpu_a!"]})


def _stored_variant(tmp_path):
    from tasks.formats.base import Built
    from tasks.variants import Variant, VariantOutcome

    stored = stored_step(tmp_path / "store", "quantize", {"q": 1},
                         lambda tmp: (tmp / "model.gguf").write_bytes(b"weights" * 100))
    path = stored.path / "model.gguf"
    built = Built(format="gguf", quant="Q8_0", path=path, key=stored.key, reused=False)
    variant = Variant(name="m-q8_0", format="gguf", quant="Q8_0", path=path, key=stored.key)
    return VariantOutcome(variant=variant, built=built), path


def test_an_artefact_that_arrives_changed_is_refused(tmp_path):
    outcome, path = _stored_variant(tmp_path)
    request = remote_variant(outcome)
    assert manifest_folder(path) == path.parent
    verify_arrival(request)  # as built: accepted
    path.write_bytes(b"weights" * 99 + b"WEIGHTS")  # a stale copy, a bad mount, a half transfer
    with pytest.raises(CorruptArtifactError, match="model.gguf"):
        verify_arrival(request)


def test_an_unmounted_store_is_named(tmp_path):
    outcome, path = _stored_variant(tmp_path)
    request = remote_variant(outcome).model_copy(update={"manifest_folder": tmp_path / "elsewhere"})
    with pytest.raises(CorruptArtifactError, match="same path on every machine"):
        verify_arrival(request)


def test_an_artefact_outside_the_store_is_refused(tmp_path):
    (tmp_path / "loose.gguf").write_bytes(b"x")
    with pytest.raises(UserError, match="not inside an slmforge store"):
        manifest_folder(tmp_path / "loose.gguf")


def test_dask_only_with_a_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert not uses_dask(BuildRunnerConfig())
    with pytest.raises(UserError, match="PREFECT_API_URL"):
        uses_dask(BuildRunnerConfig(runner="dask"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert uses_dask(BuildRunnerConfig()) and not uses_dask(BuildRunnerConfig(runner="threads"))


def test_a_failed_hardware_class_fails_the_parent_run(tmp_path):
    """The parent of a run whose class failed (its variants all fine here) ends FAILED, with the reason."""
    from mlflow.tracking import MlflowClient

    from tasks.tracking import client as tracking, report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.prepare_store(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("classes")
    run_id = tracking.start_run(client, experiment_id, name="parent", tags={})
    config_file = tmp_path / "cfg" / "resolved_config.yaml"
    config_file.parent.mkdir()
    ctx = report.RunContext(client, uri, experiment_id, run_id, config_file, {run_id})
    report.close_parent_run(ctx, [], ["hardware class cpu-b: worker lost"])
    parent = client.get_run(run_id)
    assert parent.info.status == "FAILED" and "cpu-b" in parent.data.tags["slmforge.error"]
