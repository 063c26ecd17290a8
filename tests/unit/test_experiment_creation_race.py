"""Two runs starting at once must share one experiment, whoever of them creates it."""

import threading

import pytest
from mlflow.tracking import MlflowClient

from tasks.core.errors import UserError
from tasks.tracking import client as tracking


@pytest.fixture
def store(tmp_path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # create the schema once: the race under test is later
    return uri


def test_concurrent_callers_get_the_same_experiment(store, monkeypatch):
    # Both callers look the name up before either creates it: the interleaving that raced. The
    # barrier holds each lookup's "not found" answer until both have asked.
    barrier = threading.Barrier(2, timeout=30)
    real_lookup = MlflowClient.get_experiment_by_name
    first_lookups: set[int] = set()

    def lookup_then_wait(self, name):
        found = real_lookup(self, name)
        if threading.get_ident() not in first_lookups:
            first_lookups.add(threading.get_ident())
            barrier.wait()
        return found

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", lookup_then_wait)
    ids: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ids.append(tracking.ensure_experiment(MlflowClient(store), "shared", store))
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [e.name for e in MlflowClient(store).search_experiments()].count("shared") == 1


def test_an_existing_experiment_is_reused(store):
    first = tracking.ensure_experiment(MlflowClient(store), "exp", store)
    assert tracking.ensure_experiment(MlflowClient(store), "exp", store) == first


def test_a_deleted_experiment_says_how_to_restore_it(store):
    client = MlflowClient(store)
    experiment_id = tracking.ensure_experiment(client, "gone", store)
    client.delete_experiment(experiment_id)
    with pytest.raises(UserError, match=f"deleted.*restore --experiment-id {experiment_id}"):
        tracking.ensure_experiment(client, "gone", store)


def test_a_sqlite_store_keeps_its_artifacts_beside_it_relative_or_absolute(tmp_path, monkeypatch):
    from tasks.tracking.client import experiment_artifact_location

    assert experiment_artifact_location(f"sqlite:///{tmp_path}/db/mlflow.db", "e") == (tmp_path / "db" / "artifacts" / "e").as_uri()
    monkeypatch.chdir(tmp_path)
    assert experiment_artifact_location("sqlite:///rel/mlflow.db", "e") == (tmp_path / "rel" / "artifacts" / "e").as_uri()
    assert experiment_artifact_location("http://127.0.0.1:5000", "e") is None
