from prefect.states import Failed

from tasks.core.errors import ConfigError, MeasurementError, SourceError, TransientError, UserError
from tasks.prefect_tasks import retry_only_transient


def test_transient_errors_are_retried_and_user_errors_are_not():
    assert retry_only_transient(None, None, Failed(data=TransientError("hub timed out")))
    assert not retry_only_transient(None, None, Failed(data=SourceError("no config.json")))
    assert not retry_only_transient(None, None, Failed(data=ConfigError("c.yaml", ["bad"])))
    assert not retry_only_transient(None, None, Failed(data=ValueError("bug")))


def test_a_killed_or_timed_out_measurement_fails_its_variant_without_retry():
    # A worker killed for memory would be killed again: retrying only costs time.
    assert issubclass(MeasurementError, UserError) and not issubclass(MeasurementError, TransientError)
    assert not retry_only_transient(None, None, Failed(data=MeasurementError("killed by SIGKILL")))
    assert not retry_only_transient(None, None, Failed(data=MeasurementError("ran past evaluate.timeout_s")))
