"""Measurements on the hardware they describe: one work pool per hardware class.

Building runs anywhere; a timed figure only means something on the machine it names. When a
config lists `hardware: [cpu-avx2, cuda-h100]`, the pipeline builds here, then submits one
`slmforge-measure/<class>` flow run per class to that class's work pool; a worker on such a
machine measures every variant, logs one child run per variant into the same MLflow parent run,
and returns the figures. Artefacts reach the workers through the shared store (the same path on
every machine: a shared filesystem such as NFS); each artefact's sha256 manifest travels with the
request and is checked on arrival, so a stale or half-copied file is refused, not measured.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.core.errors import CorruptArtifactError, UserError
from tasks.remote.wait import wait_for_class_run
from tasks.store.artifacts import MANIFEST_NAME
from tasks.store.hashing import verify_manifest

MEASURE_FLOW = "slmforge-measure"
CLASS_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class RemoteVariant(BaseModel):
    """One variant a worker must measure, with the hashes its artefact must have on arrival."""

    outcome: dict[str, Any] = Field(description="The VariantOutcome (variant + built), as JSON.")
    manifest_folder: Path = Field(description="The store folder holding the artefact and its manifest.")
    manifest: dict[str, str] = Field(description="File name -> sha256, as built.")


class MeasureRequest(BaseModel):
    """Everything a worker needs: the resolved config, the reference, the variants, where to log."""

    hardware_class: str
    config_yaml: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    model: dict[str, Any] = Field(description="The AcquiredModel, as JSON.")
    base: dict[str, Any] = Field(description="The BaseArtifact, as JSON.")
    reference: dict[str, Any] = Field(description="The stored Reference, as JSON.")
    tokens_file: Path
    variants: list[RemoteVariant]
    result_file: Path = Field(description="Where the worker writes its ClassResult (in the shared store).")


class ClassResult(BaseModel):
    """What one hardware class returned: per variant, its figures or its error."""

    hardware_class: str
    hardware_id: str = ""
    hardware: dict[str, Any] = Field(default_factory=dict, description="The worker's hardware facts.")
    outcomes: list[dict[str, Any]] = Field(default_factory=list, description="VariantOutcomes, as JSON.")
    error: str | None = Field(None, description="Why the whole class failed (worker lost, flow crashed).")


def check_class_names(classes: list[str]) -> list[str]:
    """One line per invalid class name (it names a work pool and a deployment)."""
    return [f"hardware: {name!r} is not a valid class name; use lowercase letters, digits and '-', "
            f"e.g. cpu-avx2" for name in classes if not CLASS_PATTERN.match(name)]


def remote_variant(outcome) -> RemoteVariant:
    """The request entry for one built variant: its outcome and the manifest it was built with."""
    folder = manifest_folder(outcome.built.path)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    return RemoteVariant(outcome=outcome.model_dump(mode="json"), manifest_folder=folder, manifest=manifest)


def manifest_folder(path: Path) -> Path:
    """The store folder that holds `path` (a file or a folder) and its manifest."""
    for folder in [path, *path.parents]:
        if (folder / MANIFEST_NAME).is_file():
            return folder
    raise UserError(f"{path} is not inside an slmforge store folder (no {MANIFEST_NAME} above it); "
                    "remote measurement needs artefacts from the shared store")


def verify_arrival(variant: RemoteVariant) -> None:
    """Refuse an artefact that is missing or differs from what was built (a stale mount, a half copy)."""
    if not variant.manifest_folder.is_dir():
        raise CorruptArtifactError(
            f"artefact folder {variant.manifest_folder} is not visible on this worker; mount the shared store "
            "at the same path on every machine (store_dir in the config)")
    verify_manifest(variant.manifest_folder, variant.manifest)


def submit_all(request_for: dict[str, MeasureRequest], *, timeout_s: float,
               worker_wait_s: float) -> dict[str, ClassResult]:
    """One flow run per class, all at once (each class is its own machines); waits for every one."""
    with ThreadPoolExecutor(max_workers=len(request_for)) as pool:
        futures = {cls: pool.submit(run_on_class, cls, request, timeout_s, worker_wait_s)
                   for cls, request in request_for.items()}
        return {cls: future.result() for cls, future in futures.items()}


def run_on_class(hardware_class: str, request: MeasureRequest, timeout_s: float, worker_wait_s: float) -> ClassResult:
    from prefect.deployments import run_deployment  # Prefect: heavy, only inside a flow run or a worker command

    try:
        submitted = run_deployment(f"{MEASURE_FLOW}/{hardware_class}", parameters={"request": request.model_dump(
            mode="json")}, timeout=0, as_subflow=False)
    except Exception as exc:  # noqa: BLE001 - no deployment, no server: this class fails, not the others
        return ClassResult(hardware_class=hardware_class, error=f"could not submit to work pool {hardware_class!r}: "
                           f"{exc}; start a worker with `slmforge worker start --hardware-class {hardware_class}`")
    flow_run, gave_up = wait_for_class_run(submitted.id, pool=hardware_class, timeout_s=timeout_s,
                                           worker_wait_s=worker_wait_s)
    state = flow_run.state
    if gave_up or state is None or not state.is_completed():
        what = state.name if state is not None else "no state"
        why = gave_up or (state.message if state is not None and state.message else "no message")
        return ClassResult(hardware_class=hardware_class, error=(
            f"measurement flow run {flow_run.id} on {hardware_class!r} ended {what} ({why}); "
            "rerun: finished variants are reused from the store"))
    if not request.result_file.is_file():
        return ClassResult(hardware_class=hardware_class, error=f"flow run {flow_run.id} completed but wrote no "
                           f"result at {request.result_file}: is the store shared with the worker?")
    return ClassResult.model_validate_json(request.result_file.read_text())


def write_result(result: ClassResult, path: Path) -> None:
    """Written whole or not at all: a reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.model_dump_json())
    tmp.replace(path)
