from prefect.states import Failed

from tasks.errors import ConfigError, SourceError, TransientError, WorkerCrashedError
from tasks.prefect_tasks import retry_only_transient


def test_transient_errors_are_retried_and_user_errors_are_not():
    assert retry_only_transient(None, None, Failed(data=TransientError("hub timed out")))
    assert retry_only_transient(None, None, Failed(data=WorkerCrashedError("killed")))
    assert not retry_only_transient(None, None, Failed(data=SourceError("no config.json")))
    assert not retry_only_transient(None, None, Failed(data=ConfigError("c.yaml", ["bad"])))
    assert not retry_only_transient(None, None, Failed(data=ValueError("bug")))
