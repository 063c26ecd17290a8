"""Where the builds (conversions, quantizations, exports) fan out: threads here, or Dask.

Builds are independent and CPU-bound, so a Dask cluster (a LocalCluster of worker processes on this
host, or an existing scheduler's workers) runs them side by side through prefect-dask, each a normal
Prefect task run. Dask workers report their task runs to the Prefect server, so Dask needs a real
server (without one, each worker process would start its own temporary server): "auto" uses Dask
only when PREFECT_API_URL names one, and the embedded default keeps its two threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import UserError
from tasks.hosts.processes import stop_this_run


class BuildRunnerConfig(BaseModel):
    """How the builds of one run are spread."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runner: Literal["auto", "threads", "dask"] = Field(
        "auto", description="threads: a pool in the flow's process; dask: prefect-dask; auto: dask when a Prefect "
        "server is configured (PREFECT_API_URL), else threads.")
    threads: int = Field(2, ge=1, description="Threads of the thread runner (the embedded default: 2 cores here).")
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786; none: a LocalCluster.")
    dask_workers: int = Field(2, ge=1, description="Worker processes of the LocalCluster (one thread each).")


def uses_dask(config: BuildRunnerConfig) -> bool:
    server = bool(os.environ.get("PREFECT_API_URL"))
    if config.runner == "dask" and not server:
        raise UserError("builds.runner is dask, but no Prefect server is configured: set PREFECT_API_URL "
                        "(`slmforge stack up` starts one) or use builds.runner: threads")
    return config.runner == "dask" or (config.runner == "auto" and server)


@contextmanager
def build_runner(config: BuildRunnerConfig) -> Iterator:
    """A task runner, entered, around the builds' submissions.

    Leaving the block waits for every build. When the run is being stopped (a SIGTERM, which Prefect
    raises in the flow's thread as its TerminationSignal, or Ctrl-C: neither is an Exception), the
    builds' processes are stopped first and no queued build starts; else the wait lasted as long as
    the longest build (seen: a quantize and llama-imatrix ran on 1.5 minutes after the flow crashed)."""
    with _task_runner(config) as runner:
        try:
            yield runner
        except BaseException as exc:
            if not isinstance(exc, Exception):
                stop_this_run()
            raise


def _task_runner(config: BuildRunnerConfig):
    if not uses_dask(config):
        # Prefect: heavy, only inside a flow run or a worker command
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.threads)
    from prefect_dask import DaskTaskRunner  # Dask: only when builds fan out to a cluster

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    # One thread per worker process: a quantization uses its own threads, and Python threads in one
    # worker would share the GIL for the Python parts of a conversion.
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})
