"""A machine joins a hardware class: its work pool, the measurement deployment, crash detection.

`slmforge worker start --hardware-class NAME` makes sure the Prefect server has a process work pool
NAME, the deployment `slmforge-measure/NAME` of `flows/measure.py:measure_on_worker` from this
checkout, and one automation that marks Crashed any flow run whose heartbeats stop (a machine lost
mid-measurement must not look alive), then runs `prefect worker start` with one flow run at a time.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

from tasks.core.errors import UserError
from tasks.remote.submit import MEASURE_FLOW, check_class_names

REPO_ROOT = Path(__file__).resolve().parents[2]
CRASH_AUTOMATION = "slmforge: crash flow runs whose heartbeats stopped"
# Prefect's minimum heartbeat period; three missed beats mark the run Crashed.
HEARTBEAT_S = 30
MEASURE_ENTRYPOINT = "flows/measure.py:measure_on_worker"


def require_server() -> str:
    from prefect.settings import PREFECT_API_URL  # Prefect: heavy, only inside a flow run or a worker command

    url = PREFECT_API_URL.value()
    if not url:
        raise UserError("a worker needs a Prefect server: set PREFECT_API_URL (e.g. `eval \"$(slmforge stack env)\"` "
                        "after `slmforge stack up`, or your team's server URL)")
    return url


def prepare_class(hardware_class: str, *, heartbeat_timeout_s: float = 3 * HEARTBEAT_S) -> None:
    """Work pool, deployment and crash automation for `hardware_class`; safe to repeat."""
    if problems := check_class_names([hardware_class]):
        raise UserError(problems[0])
    require_server()
    _ensure_pool(hardware_class)
    _ensure_crash_automation(heartbeat_timeout_s)
    from prefect import flow  # Prefect's client: only when a machine joins a class

    # Loaded from its entrypoint, as the worker will: the flow sits above this module, not imported by it.
    source = flow.from_source(source=str(REPO_ROOT), entrypoint=MEASURE_ENTRYPOINT)
    source.deploy(name=hardware_class, work_pool_name=hardware_class, build=False, push=False, print_next_steps=False,
                  description=f"Measure slmforge variants on a {hardware_class} machine.", tags=["slmforge"])


def worker_command(hardware_class: str) -> list[str]:
    """One flow run at a time per machine: measurements never share its cores."""
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", hardware_class, "--type", "process",
            "--limit", "1", "--name", f"{hardware_class}-{socket.gethostname()}-{os.getpid()}"]


def worker_env() -> dict[str, str]:
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}


def _ensure_pool(name: str) -> None:
    from prefect.client.orchestration import get_client  # Prefect: heavy, only inside a flow run or a worker command
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def _ensure_crash_automation(timeout_s: float) -> None:
    """Prefect's documented zombie detection: no heartbeat (nor end) within `timeout_s` -> Crashed."""
    # Prefect: heavy, only inside a flow run or a worker command
    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    try:
        Automation.read(name=CRASH_AUTOMATION)
        return
    except ValueError:
        pass  # not there yet
    Automation(
        name=CRASH_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]}, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=timeout_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {timeout_s:.0f} s: the worker's machine or process was lost")],
    ).create()
