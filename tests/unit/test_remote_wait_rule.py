"""When the wait on a hardware class gives up: the rule, without a server."""

from datetime import datetime, timedelta, timezone

from tasks.remote.wait import give_up_reason, worker_is_live

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def test_a_worker_is_live_until_it_misses_three_heartbeats():
    assert worker_is_live(NOW - timedelta(seconds=89), 30, NOW)
    assert not worker_is_live(NOW - timedelta(seconds=91), 30, NOW)
    assert not worker_is_live(None, 30, NOW)  # registered, never beat


def test_a_run_nobody_can_take_fails_fast_and_names_the_command():
    reason = give_up_reason(started=False, waited_s=601, without_worker_s=601, timeout_s=6 * 3600,
                            worker_wait_s=600, pool="cpu-b")
    assert "no live worker in work pool 'cpu-b'" in reason
    assert "slmforge worker start --hardware-class cpu-b" in reason


def test_a_queued_run_with_a_live_worker_waits_its_turn():
    assert give_up_reason(started=False, waited_s=3000, without_worker_s=0, timeout_s=6 * 3600,
                          worker_wait_s=600, pool="cpu-b") is None


def test_a_started_run_is_left_to_its_heartbeats_until_the_timeout():
    assert give_up_reason(started=True, waited_s=3000, without_worker_s=3000, timeout_s=6 * 3600,
                          worker_wait_s=600, pool="cpu-b") is None
    reason = give_up_reason(started=True, waited_s=6 * 3600, without_worker_s=0, timeout_s=6 * 3600,
                            worker_wait_s=600, pool="cpu-b")
    assert "still running after remote_timeout_s=21600" in reason
