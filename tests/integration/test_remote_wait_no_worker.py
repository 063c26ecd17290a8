"""A hardware class whose work pool has no live worker fails in minutes, not hours, and its flow
run is cancelled (a worker started later must not measure into a failed pipeline run). Real
Prefect server (the test harness's), the real measurement deployment; no worker process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tasks.remote.submit import MeasureRequest, run_on_class
from tasks.remote.workers import prepare_class


def _request(tmp_path: Path, cls: str) -> MeasureRequest:
    return MeasureRequest(hardware_class=cls, config_yaml="{}", tracking_uri="sqlite:///unused.db", experiment_id="0",
                          parent_run_id="p", model={}, base={}, reference={}, tokens_file=tmp_path / "tokens.json",
                          variants=[], result_file=tmp_path / f"{cls}.json")


def _flow_run_state(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _run_id(error: str) -> str:
    return error.split("measurement flow run ", 1)[1].split(" ", 1)[0]


def test_no_worker_in_the_pool_fails_fast_and_cancels_the_run(prefect_harness, tmp_path):
    prepare_class("cpu-nobody")
    start = time.monotonic()
    result = run_on_class("cpu-nobody", _request(tmp_path, "cpu-nobody"), timeout_s=3600, worker_wait_s=4)
    assert time.monotonic() - start < 60
    assert "no live worker in work pool 'cpu-nobody'" in result.error
    assert "slmforge worker start --hardware-class cpu-nobody" in result.error
    assert _flow_run_state(_run_id(result.error)).is_cancelled()


def test_a_live_worker_keeps_the_run_waiting_until_the_timeout(prefect_harness, tmp_path):
    """A worker that beats but never takes the run (busy elsewhere): the wait lasts the timeout,
    not the worker wait, and the run is cancelled when it ends."""
    from prefect.client.orchestration import get_client

    prepare_class("cpu-busy")
    stop = threading.Event()

    def heartbeat():  # what `prefect worker start` sends, without polling for runs
        with get_client(sync_client=True) as client:
            while not stop.is_set():
                client.send_worker_heartbeat("cpu-busy", "busy-worker", heartbeat_interval_seconds=2)
                stop.wait(1)

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        time.sleep(1.5)
        result = run_on_class("cpu-busy", _request(tmp_path, "cpu-busy"), timeout_s=12, worker_wait_s=3)
    finally:
        stop.set()
        beating.join(timeout=10)
    assert "not started after remote_timeout_s=12" in result.error
    assert _flow_run_state(_run_id(result.error)).is_cancelled()
