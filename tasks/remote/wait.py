"""Waiting on a hardware class's measurement flow run, without waiting on nothing.

`run_deployment(timeout=...)` alone waits the whole timeout (hours) for a run that no worker will
ever take, and leaves it Scheduled when it gives up: a worker started the next morning would then
measure into a pipeline run that already failed. Here the wait fails fast when the class's work
pool has had no live worker for `worker_wait_s`, and whatever the wait gives up on is cancelled.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from uuid import UUID

# Prefect's rule (server.schemas.responses.INACTIVITY_HEARTBEAT_MULTIPLE): a worker that missed
# three heartbeats is offline. Applied here as well, so the verdict does not depend on the
# server's foreman service having run.
MISSED_HEARTBEATS = 3


def worker_is_live(last_heartbeat: datetime | None, interval_s: float | None, now: datetime) -> bool:
    if last_heartbeat is None:
        return False
    return now - last_heartbeat <= timedelta(seconds=MISSED_HEARTBEATS * (interval_s or 30))


def give_up_reason(*, started: bool, waited_s: float, without_worker_s: float, timeout_s: float,
                   worker_wait_s: float, pool: str) -> str | None:
    """Why the wait should stop now (None: keep waiting). A run that started is left to its
    heartbeats (the crash automation ends it if its worker dies); one that did not start needs a
    live worker in its pool."""
    if waited_s >= timeout_s:
        return f"still {'running' if started else 'not started'} after remote_timeout_s={timeout_s:g}"
    if not started and without_worker_s >= worker_wait_s:
        return (f"no live worker in work pool {pool!r} for {without_worker_s:.0f} s "
                f"(remote_worker_wait_s={worker_wait_s:g}); start one on a {pool} machine with "
                f"`slmforge worker start --hardware-class {pool}`")
    return None


def wait_for_class_run(flow_run_id: UUID, *, pool: str, timeout_s: float, worker_wait_s: float,
                       poll_s: float = 2.0):
    """The flow run once it ends; or (the run, why) after cancelling it when the wait gives up."""
    from prefect.client.orchestration import get_client  # Prefect: heavy, only inside a flow run or a worker command

    start = time.monotonic()
    live_seen = start
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run, None
            started = _started(run)
            now = time.monotonic()
            if started or _pool_has_live_worker(client, pool):
                live_seen = now
            reason = give_up_reason(started=started, waited_s=now - start, without_worker_s=now - live_seen,
                                    timeout_s=timeout_s, worker_wait_s=worker_wait_s, pool=pool)
            if reason:
                _cancel(client, run, reason)
                return client.read_flow_run(flow_run_id), reason
            time.sleep(poll_s)


def _started(run) -> bool:
    return run.state is not None and not (run.state.is_scheduled() or run.state.is_pending())


def _pool_has_live_worker(client, pool: str) -> bool:
    now = datetime.now(timezone.utc)
    return any(worker_is_live(w.last_heartbeat_time, w.heartbeat_interval_seconds, now)
               for w in client.read_workers_for_work_pool(work_pool_name=pool))


def _cancel(client, run, reason: str) -> None:
    """A run nobody took is Cancelled outright; a running one is asked to stop (its worker kills
    the process and reports Cancelled)."""
    from prefect.states import Cancelled, Cancelling  # Prefect: heavy, only inside a flow run or a worker command

    state = Cancelling(message=f"slmforge gave up: {reason}") if _started(run) else \
        Cancelled(message=f"slmforge gave up: {reason}")
    client.set_flow_run_state(run.id, state, force=True)
