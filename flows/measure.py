"""Measuring on a hardware class's own machines: the worker's flow, and the pipeline's side of it.

`measure_on_worker` runs on a worker of the class's work pool (deployment
`slmforge-measure/<class>`): it checks each artefact's hashes on arrival, measures the variants one
at a time (the worker runs one flow run at a time: timed runs never share its cores), logs one child
run per variant under the pipeline's parent run and writes the figures back to the shared store.
`measure_remotely` is called by the pipeline instead of measuring in its own process.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, runtime

from tasks.acquire import AcquiredModel
from tasks.config import PipelineConfig
from tasks.core.errors import SlmforgeError
from tasks.evaluate.measure import Reference
from tasks.formats.base import BaseArtifact
from tasks.hosts.hardware import hardware_facts
from tasks.prefect_tasks import bandwidth_task
from tasks.tracking import report
from tasks.remote.submit import (
    MEASURE_FLOW, ClassResult, MeasureRequest, remote_variant, submit_all, verify_arrival, write_result,
)
from tasks.steps import apply_gates, measure_variant  # the same steps as a local run, not a copy
from tasks.store.versions import tool_versions
from tasks.variants import VariantOutcome

CLASS_TAG = "slmforge.hardware_class"


@flow(name=MEASURE_FLOW, flow_run_name="measure-on-{request[hardware_class]}")
def measure_on_worker(request: dict) -> None:
    """Measure the requested variants on this machine; the figures go to MLflow and the shared store."""
    req = MeasureRequest.model_validate(request)
    config = PipelineConfig.model_validate(yaml.safe_load(req.config_yaml))
    hardware, versions = hardware_facts(), tool_versions()
    hardware["read_bandwidth_bytes_per_s"] = bandwidth_task(config.store_dir, hardware["hardware_id"],
                                                            config.evaluate.threads)
    # The class is part of the measurement's identity: two classes on one machine (a test, a host in
    # two pools) each get their own figures rather than one reusing the other's.
    measured_as = f"{hardware['hardware_id']}@{req.hardware_class}"
    model = AcquiredModel.model_validate(req.model)
    inputs = {"base": BaseArtifact.model_validate(req.base), "reference": Reference.model_validate(req.reference),
              "tokens_file": req.tokens_file, "config": config, "hardware_id": measured_as}
    outcomes = []
    with report.attached_run(req.tracking_uri, req.experiment_id, req.parent_run_id, req.config_yaml) as ctx:
        for item in req.variants:
            outcome = VariantOutcome.model_validate(item.outcome)
            try:
                verify_arrival(item)
            except SlmforgeError as exc:
                outcome.error = str(exc)
            if outcome.error is None:
                measure_variant(outcome, **inputs)
            report.open_variant_run(ctx, outcome, model=model, hardware_id=hardware["hardware_id"], versions=versions,
                                    reference=report.reference_of(model, config), tags={CLASS_TAG: req.hardware_class})
            outcomes.append(outcome)
        apply_gates(outcomes, config, hardware)
        for outcome in outcomes:
            report.close_variant_run(ctx, outcome, artifacts="reference")
    write_result(ClassResult(hardware_class=req.hardware_class, hardware_id=hardware["hardware_id"],
                             hardware=hardware, outcomes=[o.model_dump(mode="json") for o in outcomes]),
                 req.result_file)
    get_run_logger().info("measured %d variants on %s (%s)", len(outcomes), req.hardware_class, hardware["hardware_id"])


def measure_remotely(ctx: report.RunContext, outcomes: list[VariantOutcome], *, config: PipelineConfig,
                     model: AcquiredModel, base: BaseArtifact, reference: Reference, tokens_file: Path) -> dict:
    """Submit every built variant to every configured class; the first class's figures become the
    run's own (gates, packages); returns the hardware facts of that class and every class's result."""
    batch = config.store_dir.resolve() / "remote" / str(runtime.flow_run.id or uuid.uuid4())
    built = [remote_variant(o) for o in outcomes if o.error is None]
    requests = {cls: MeasureRequest(
        hardware_class=cls, config_yaml=report.dump_config(config), tracking_uri=ctx.tracking_uri,
        experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id, model=model.model_dump(mode="json"),
        base=base.model_dump(mode="json"), reference=reference.model_dump(mode="json"),
        tokens_file=tokens_file.resolve(), variants=built, result_file=batch / f"{cls}.json",
    ) for cls in config.hardware}
    results = submit_all(requests, timeout_s=config.remote_timeout_s, worker_wait_s=config.remote_worker_wait_s)
    for result in results.values():
        if result.error:
            report.fail_open_children(ctx, tag=(CLASS_TAG, result.hardware_class), reason=result.error)
    primary = results[config.hardware[0]]
    by_name = {o["variant"]["name"]: VariantOutcome.model_validate(o) for o in primary.outcomes}
    for outcome in outcomes:
        if outcome.error is not None:
            continue
        if primary.error or outcome.variant.name not in by_name:
            outcome.error = primary.error or f"not measured on {primary.hardware_class}"
            continue
        measured = by_name[outcome.variant.name]
        outcome.metrics, outcome.reused, outcome.error = measured.metrics, measured.reused, measured.error
        outcome.mlflow_run_id, outcome.measurement = measured.mlflow_run_id, measured.measurement
    return {"hardware": primary.hardware, "classes": results}
