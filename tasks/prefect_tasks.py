"""Thin Prefect wrappers around the pure step cores: naming, retries, logging. No logic here.

The artefact store is the cache (keys from content, hashes verified on reuse), so Prefect's
own result cache is off: a cached Prefect result could point at a file deleted since. No wrapper
names a format: formats are looked up in the registry by name.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.acquire import AcquireConfig, AcquiredModel, acquire_model
from tasks.core.errors import TransientError
from tasks.core.progress import StepProgress
from tasks.evaluate import EvalConfig, default_threads
from tasks.evaluate import measure
from tasks.evaluate.bandwidth import cached_probe_record, cached_read_bandwidth
from tasks.formats import REFERENCE_FORMAT, get_format
from tasks.formats.base import BaseArtifact, Built, BuildInputs, BuildsBase, Packaged, PackageInputs, Serves
from tasks.hosts import hostlock
from tasks.plan.probe import HostProbe, ProbeError, host_probe
from tasks.plan.records import metered
from tasks.review.promote import register_run


def retry_only_transient(task_obj, task_run, state) -> bool:
    """Retry network hiccups; user errors, failed or killed measurements fail fast with their message."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is final
        return False
    return False


step = partial(
    task, retries=2, retry_delay_seconds=3, retry_condition_fn=retry_only_transient, cache_policy=NO_CACHE,
)


def _waits(step_name: str):
    return lambda: get_run_logger().info("%s waits: a timed measurement holds this host's cores", step_name)


def _run_key() -> str:
    """The flow run a step belongs to: its measured time and memory join that run's records."""
    from prefect import runtime  # Prefect: heavy, only inside a flow run or a worker command

    return str(runtime.flow_run.id)


def _report(what: str, reused: bool, path: Path) -> None:
    get_run_logger().info("%s: %s %s", what, "reused (hashes verified)" if reused else "built", path)


@step(name="acquire")
def acquire_task(source, config: AcquireConfig, store_root: Path) -> AcquiredModel:
    with hostlock.shared(on_wait=_waits("acquire")), metered(_run_key(), "acquire") as note:
        model = acquire_model(source, config, store_root=store_root)
        note.n_weights, note.reused = model.param_count, model.reused
        note.strategy, note.predicted_peak_bytes = model.acquire_strategy, model.predicted_peak_bytes
    if model.strategy_note:
        get_run_logger().warning("acquire: %s", model.strategy_note)
    _report(f"acquire {model.source} ({model.param_count:,} params, {model.tier})", model.reused, model.hf_dir)
    return model


@step(name="convert")
def base_task(model: AcquiredModel, model_name: str, config: BaseModel, store_root: Path) -> BaseArtifact:
    reference: BuildsBase = get_format(REFERENCE_FORMAT)
    with hostlock.shared(on_wait=_waits("convert")), metered(_run_key(), "convert") as note:
        base = reference.build_base(model, model_name=model_name, config=config, store_root=store_root)
        note.n_weights, note.reused, note.strategy = base.n_weights, base.reused, base.quant.lower()
    _report(f"convert to {base.quant.lower()} (the reference)", base.reused, base.path)
    return base


@step(name="build", task_run_name="build-{format_name}-{quant}")
def build_task(format_name: str, quant: str, inputs: BuildInputs, config) -> Built:
    with hostlock.shared(on_wait=_waits("build")), metered(_run_key(), f"build {format_name} {quant}") as note:
        built = get_format(format_name).build(quant, inputs, config)
        note.n_weights, note.reused = inputs.base.n_weights, built.reused
    _report(f"build {format_name} {quant}", built.reused, built.path)
    return built


@step(name="memory-bandwidth")
def bandwidth_task(store_root: Path, hardware_id: str, threads: int | None) -> float:
    """Read bandwidth of this host, probed once per host and thread count (cached in the store)."""
    threads = threads or default_threads()
    bandwidth = cached_read_bandwidth(store_root / "bandwidth.json", hardware_id, threads)
    record = cached_probe_record(store_root / "bandwidth.json", hardware_id, threads)
    get_run_logger().info("memory read bandwidth: %.1f GB/s (%d threads, best kernel %s, probed %s)", bandwidth / 1e9,
                          threads, record.get("kernel", "?"), record.get("measured_at", "?"))
    return bandwidth


@step(name="host-probe")
def probe_task(hardware_id: str) -> HostProbe | None:
    """This host's forward-pass probe, taken once per host (tasks/plan/probe.py): the plan scales its
    built-in time lines by it, and the run's record carries it for other hosts' plans. A probe that
    cannot run costs the run nothing: the plan stays unscaled."""
    from tasks.plan.host import describe_probe  # the plan's wording of a probe

    try:
        probe = host_probe(hardware_id, on_wait=lambda: get_run_logger().info(
            "host probe waits: a timed measurement holds this host's cores"))
    except ProbeError as exc:
        get_run_logger().warning("host probe not taken: %s; the plan's built-in lines stay unscaled", exc)
        return None
    get_run_logger().info("%s", describe_probe(probe))
    return probe


@step(name="tokenize-eval-text")
def tokens_task(base: BaseArtifact, config: EvalConfig, store_root: Path) -> Path:
    return measure.prepare_tokens(base, config, store_root=store_root)


@step(name="reference-pass")
def reference_task(base: BaseArtifact, tokens_file: Path, config: EvalConfig, store_root: Path) -> measure.Reference:
    with hostlock.shared(on_wait=_waits("reference pass")), \
            metered(_run_key(), "reference pass") as note:  # not timed, but it would slow one that is
        ref = measure.compute_reference(base, tokens_file, config, store_root=store_root,
                                        on_progress=StepProgress(f"reference {base.quant}"))
        note.n_weights, note.reused, note.chunks = base.n_weights, ref.reused, ref.chunks_scored
    get_run_logger().info("reference pass %s", ref.describe())
    return ref


@step(name="measure", task_run_name="measure-{variant_name}")
def measure_task(variant_name: str, built: Built, *, base: BaseArtifact, reference: measure.Reference,
                 tokens_file: Path, config: EvalConfig, hardware_id: str, store_root: Path,
                 is_base: bool) -> tuple[dict, bool]:
    # Alone on this host's cores: no build or other measurement of any slmforge process beside it.
    with hostlock.exclusive(on_wait=lambda: get_run_logger().info("measure waits: builds or a measurement run here")):
        with metered(_run_key(), f"measure {variant_name}") as note:
            metrics, reused = measure.measure_variant(
                built, base=base, reference=reference, tokens_file=tokens_file, config=config,
                hardware_id=hardware_id, store_root=store_root, is_base=is_base,
                on_progress=StepProgress(variant_name),
            )
            note.n_weights, note.reused = base.n_weights, reused
            note.chunks = reference.chunks_scored
    get_run_logger().info(
        "measure %s: %s ppl=%.3f kld=%.4g decode=%.1f tok/s", variant_name, "reused" if reused else "measured",
        metrics.get("perplexity", float("nan")), metrics.get("kld_mean", float("nan")), metrics.get("decode_tps", 0.0),
    )
    return metrics, reused


@step(name="package", task_run_name="package-{variant_name}")
def package_task(variant_name: str, built: Built, inputs: PackageInputs, config) -> Packaged:
    packaged = get_format(built.format).package(built, inputs, config)
    _report(f"package {variant_name} ({packaged.label})", packaged.reused, packaged.folder)
    return packaged


@step(name="register", retries=0)
def register_task(tracking_uri: str, *, experiment_id: str, parent_run_id: str, model_name: str, config) -> list[str]:
    """Passing variants as registry versions, device aliases moved (tasks.review.promote)."""
    from mlflow.tracking import MlflowClient  # MLflow: heavy, only where runs are read or written

    lines = register_run(MlflowClient(tracking_uri=tracking_uri), experiment_id=experiment_id,
                         parent_run_id=parent_run_id, model_name=model_name, config=config)
    for line in lines:
        get_run_logger().info("registry: %s", line)
    return lines


@step(name="serve", task_run_name="serve-{variant_name}", retries=0)
def serve_task(variant_name: str, built: Built, inputs: PackageInputs, config, *, n_weights: int):
    """Serve, smoke-test and load one variant where its format can serve (None otherwise)."""
    fmt = get_format(built.format)
    if not isinstance(fmt, Serves):
        return None
    with metered(_run_key(), f"serve {variant_name}") as note:  # the cost model learns serving too
        result = fmt.serve(built, inputs, config)
        if result is not None:
            note.n_weights, note.reused = n_weights, result.reused
    if result is not None:
        get_run_logger().info("serve %s: %s %s, smoke %s, decode %.1f tok/s through the server", variant_name,
                              "reused" if result.reused else "served", result.server,
                              "pass" if result.passed else "FAIL", result.metrics.get("serve_decode_tps", float("nan")))
    return result
