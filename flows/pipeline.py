"""acquire -> convert -> build every format's variants -> measure -> gate -> package, tracked in MLflow.

Wiring only: which steps, in what order, fanned out over the configured formats and variants.
No format is named here; each comes from the registry (tasks.formats).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from flows.measure import measure_remotely
from tasks.config import PipelineConfig, load_config
from tasks.core.errors import SourceError, VariantsFailedError
from tasks.core.naming import variant_name
from tasks.evaluate import default_threads
from tasks.evaluate.domains import evaluation_text_problems
from tasks.formats import REFERENCE_FORMAT, get_format, refuse_unsupported
from tasks.formats.base import Built, BuildInputs, PackageInputs
from tasks.hosts.hardware import hardware_facts
from tasks.plan.records import evaluation_protocol, keep_run_record, take_records
from tasks.prefect_tasks import (
    acquire_task, bandwidth_task, base_task, build_task, package_task, probe_task, reference_task, register_task,
    serve_task, tokens_task,
)
from tasks.remote.build_runner import build_runner
from tasks.review.watch import RegressionError, check_regressions, publish_regressions
from tasks.steps import apply_gates, measure_variant
from tasks.tracking import report
from tasks.tracking.client import run_url
from tasks.tracking.mlflow_ui import view_url
from tasks.store.artifacts import clean_stale_temporaries
from tasks.store.versions import tool_versions
from tasks.variants import Variant, VariantOutcome, summary_rows


@flow(name="slmforge-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(config_path: str = "configs/default.yaml", fail_on_regression: bool | None = None) -> dict:
    """Run the whole chain for one config; returns the summary the CLI prints. `fail_on_regression`
    overrides the config's regressions.fail_on_regression (scheduled deployments set it)."""
    config = load_config(Path(config_path))
    if problems := evaluation_text_problems(config.evaluate.corpus, config.evaluate.domains):
        raise SourceError("\n".join(problems))  # a changed or missing text: before any work, not after the builds
    store = config.store_dir
    clean_stale_temporaries(store)
    hardware, versions = hardware_facts(), tool_versions()
    with report.tracked_run(config, config_yaml=report.dump_config(config), flow_run_id=str(runtime.flow_run.id),
                            hardware=hardware, versions=versions) as ctx:
        probe = None
        if not config.hardware:  # measured here: probe this host (remote workers probe their own)
            hardware["read_bandwidth_bytes_per_s"] = bandwidth_task(store, hardware["hardware_id"],
                                                                    config.evaluate.threads)
            probe = probe_task(hardware["hardware_id"])
        model = acquire_task(config.source, config.acquire, store)
        keep_run_record(str(runtime.flow_run.id), store, hardware_id=hardware["hardware_id"], model=model.source,
                        n_weights=model.param_count, probe=probe, protocol=evaluation_protocol(config.evaluate))
        report.log_model_facts(ctx, model, reference=report.reference_of(model, config))
        report.log_model_plan(ctx, model)
        refuse_unsupported(model.architecture, config.formats)  # before any conversion, with the reasons
        base = base_task(model, config.model_name, config.convert, store)
        report.note_model_layout(ctx, base.path, config.evaluate)  # what fitting to a device needs
        inputs = BuildInputs(hf_dir=model.hf_dir, hf_identity=model.identity, architecture=model.architecture,
                             model_name=config.model_name, base=base, store_root=store,
                             evaluation_corpora=config.evaluate.corpora())
        with build_runner(config.builds) as runner:
            futures = {(name, quant): runner.submit(build_task, {"format_name": name, "quant": quant,
                                                                 "inputs": inputs, "config": section})
                       for name, section in config.formats.items() for quant in get_format(name).variants(section)}
            # The reference pass overlaps the builds: it is not timed. Timed runs wait for every build.
            tokens_file = tokens_task(base, config.evaluate, store)
            reference = reference_task(base, tokens_file, config.evaluate, store)
            base_built = Built(format=REFERENCE_FORMAT, quant=base.quant, path=base.path, key=base.key,
                               reused=base.reused)
            outcomes = [_outcome(config, base_built, is_base=True)]
            outcomes += [_collect(config, name, quant, future) for (name, quant), future in futures.items()]
        builds = {o.variant.name: o.built for o in outcomes if o.built is not None}
        remote = _measure_all(ctx, outcomes, config=config, model=model, hardware=hardware, versions=versions,
                              base=base, reference=reference, tokens_file=tokens_file)
        hardware = remote["hardware"] if remote else hardware
        apply_gates(outcomes, config, hardware)
        _package(outcomes, builds, model, base, config, hardware)
        for outcome in outcomes:
            report.close_variant_run(ctx, outcome, artifacts=config.tracking.artifacts)
        class_errors = [f"hardware class {c}: {r.error}" for c, r in (remote or {}).get("classes", {}).items()
                        if r.error]
        regressions = check_regressions(ctx, outcomes, config.regressions, hardware_id=hardware["hardware_id"],
                                        versions=versions)
        registry = _register(ctx, config)
        step_records = take_records(str(runtime.flow_run.id))
        report.log_step_records(ctx, step_records)
        report.close_parent_run(ctx, outcomes, class_errors)
        report.publish_prefect_artifacts(ctx, outcomes)
        publish_regressions(regressions)
        summary = {**_summary(ctx, outcomes, model, config), "regressions": regressions.lines(),
                   "versions_changed": regressions.versions_changed, "registry": registry,
                   # steps that waited for memory held by steps beside them (tasks.plan.ledger), seconds
                   "memory_waits": {r.step: r.memory_wait_s for r in step_records if r.memory_wait_s >= 0.5}}
        if remote is not None:
            summary["hardware_classes"] = _class_rows(remote["classes"])
    if errors := [f"{o.variant.name}: {o.error}" for o in outcomes if o.error] + class_errors:
        raise VariantsFailedError("Some variants failed:\n" + "\n".join(errors), summary)
    if regressions.changes and (config.regressions.fail_on_regression if fail_on_regression is None
                                else fail_on_regression):
        raise RegressionError(regressions, summary)
    return summary


def _measure_all(ctx: report.RunContext, outcomes: list[VariantOutcome], *, config: PipelineConfig, model,
                 hardware: dict, versions: dict, **inputs) -> dict | None:
    """Every variant's figures: here, one at a time, or on the configured hardware classes' workers
    (then returns their result; the first class's hardware stands for the run)."""
    remote = None
    if config.hardware:
        remote = measure_remotely(ctx, outcomes, config=config, model=model, **inputs)
    for outcome in outcomes:  # one at a time: concurrent timed runs would share cores
        if remote is None and outcome.error is None:
            measure_variant(outcome, config=config, hardware_id=hardware["hardware_id"], **inputs)
        if outcome.mlflow_run_id is None:  # a remote worker opened (and closed) those it measured
            hardware_id = (remote["hardware"] or hardware)["hardware_id"] if remote else hardware["hardware_id"]
            report.open_variant_run(ctx, outcome, model=model, hardware_id=hardware_id, versions=versions,
                                    reference=report.reference_of(model, config))
    return remote


def _class_rows(results: dict) -> dict:
    """Per hardware class: where it ran and each variant's headline figures (or why it has none)."""
    return {cls: {"hardware_id": r.hardware_id, "error": r.error, "variants": {
        o["variant"]["name"]: o.get("error") or {k: o["metrics"].get(k) for k in ("kld_mean", "decode_tps", "prefill_tps")}
        for o in r.outcomes}} for cls, r in results.items()}


def _outcome(config: PipelineConfig, built: Built, *, is_base: bool = False, error: str | None = None) -> VariantOutcome:
    name = variant_name(config.model_name, built.format, built.quant)
    variant = Variant(name=name, format=built.format, quant=built.quant, path=built.path, key=built.key, is_base=is_base)
    return VariantOutcome(variant=variant, built=None if error else built, error=error)


def _collect(config: PipelineConfig, name: str, quant: str, future) -> VariantOutcome:
    """A build's outcome; a failed build fails only its variant."""
    future.wait()
    if future.state.is_completed():
        return _outcome(config, future.result())
    return _outcome(config, Built(format=name, quant=quant, path=Path("-"), key="-", reused=False),
                    error=_message(future.state.message))


def _message(text: object) -> str:
    return str(text).removeprefix("Task run encountered an exception ")


def _package(outcomes: list[VariantOutcome], builds: dict, model, base, config: PipelineConfig, hardware: dict) -> None:
    """Package each passing variant; a packaging failure fails only its variant."""
    reference_tools = get_format(REFERENCE_FORMAT).base_tools  # what made and measured the reference
    provenance = {"source": model.source, "source_revision": model.source_revision,
                  "source_manifest_sha256": model.identity, "reference_store_key": base.key,
                  "measured_on": hardware["hardware_id"], "license": model.license,
                  "reference": report.reference_of(model, config),
                  **{name: tool_versions().get(name) for name in (*reference_tools, "transformers", "torch")}}
    threads = config.evaluate.threads or default_threads()
    for outcome in outcomes:
        if outcome.variant.format not in config.formats:
            continue  # the f16 reference of an ONNX-only run: measured, not shipped
        if outcome.gate != "pass":
            if outcome.gate == "fail":
                get_run_logger().warning("%s not packaged: gate failed (%s)", outcome.variant.name,
                                         "; ".join(outcome.gate_reasons))
            continue
        v = outcome.variant
        inputs = PackageInputs(hf_dir=model.hf_dir, model_name=config.model_name, metrics=outcome.metrics,
                               provenance=provenance, store_root=config.store_dir, threads=threads)
        try:
            if not _served(outcome, builds[v.name], inputs, config.formats[v.format], n_weights=base.n_weights):
                continue
            packaged = package_task(v.name, builds[v.name], inputs, config.formats[v.format])
        except Exception as exc:  # noqa: BLE001 - isolate the variant
            outcome.error = f"packaging failed: {exc}"
            continue
        outcome.package_dir, outcome.package_files = packaged.folder, packaged.files_to_track
        outcome.package_checks = packaged.checks


def _register(ctx: report.RunContext, config: PipelineConfig) -> list[str]:
    """Registry versions and device aliases; a registry that refuses (a store without one) is
    reported on the run and in the summary, and does not undo the measured results."""
    if not config.registry.enabled:
        return []
    try:
        return register_task(ctx.tracking_uri, experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id,
                             model_name=config.model_name, config=config.registry)
    except Exception as exc:  # noqa: BLE001 - the figures stand; the failure is said where it is seen
        get_run_logger().warning("registry not updated: %s", exc)
        return [f"registry not updated: {exc}"]


def _served(outcome: VariantOutcome, built: Built, inputs: PackageInputs, section, *, n_weights: int) -> bool:
    """Serve the variant where its format can (smoke + load figures join its metrics); False when
    the smoke test failed, which fails its gate: it is not shipped."""
    result = serve_task(outcome.variant.name, built, inputs, section, n_weights=n_weights)
    if result is None:
        return True
    outcome.metrics.update(result.metrics)
    inputs.metrics = outcome.metrics
    if not result.passed:
        outcome.gate, outcome.gate_reasons = "fail", [*outcome.gate_reasons, *result.reasons]
        get_run_logger().warning("%s not packaged: smoke test failed (%s)", outcome.variant.name,
                                 "; ".join(result.reasons))
    return result.passed


def _summary(ctx: report.RunContext, outcomes: list[VariantOutcome], model, config: PipelineConfig) -> dict:
    return {
        "rows": summary_rows(outcomes),
        "packages": {o.variant.name: str(o.package_dir) for o in outcomes if o.package_dir},
        "package_checks": {o.variant.name: o.package_checks for o in outcomes if o.package_checks},
        "gate_failures": {o.variant.name: o.gate_reasons for o in outcomes if o.gate == "fail"},
        "gate_within_noise": {o.variant.name: o.gate_within_noise for o in outcomes if o.gate_within_noise},
        "errors": {o.variant.name: o.error for o in outcomes if o.error},
        "tracking_uri": ctx.tracking_uri, "experiment_id": ctx.experiment_id,
        "mlflow_run_id": ctx.parent_run_id,
        "mlflow_url": run_url(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id),
        "mlflow_view_url": view_url(ctx.tracking_uri, ctx.experiment_id),  # the variants, key figures as columns
        "flow_run_id": str(runtime.flow_run.id), "source": model.source, "tier": model.tier,
        "reference": report.reference_of(model, config),
        "memory_plan": model.strategy_note,
        "reused": {o.variant.name: o.reused for o in outcomes},
    }
