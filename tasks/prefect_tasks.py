"""Thin Prefect wrappers around the pure step cores: naming, retries, logging. No logic here.

The artefact store is the cache (keys from content, hashes verified on reuse), so Prefect's
own result cache is off: a cached Prefect result could point at a file deleted since.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import convert, evaluate, package, quantize
from tasks.acquire import AcquireConfig, AcquiredModel, acquire_model
from tasks.errors import TransientError
from tasks.onnx import step as onnx_step
from tasks.onnx.config import OnnxTargets


def retry_only_transient(task_obj, task_run, state) -> bool:
    """Retry network hiccups and killed workers; user errors fail fast with their message."""
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


def _report(what: str, reused: bool, path: Path) -> None:
    get_run_logger().info("%s: %s %s", what, "reused (hashes verified)" if reused else "built", path)


def _report_metrics(variant_name: str, metrics: dict, reused: bool) -> None:
    get_run_logger().info(
        "evaluate %s: %s ppl=%.3f kld=%.4g decode=%.1f tok/s", variant_name, "reused" if reused else "measured",
        metrics.get("perplexity", float("nan")), metrics.get("kld_mean", float("nan")), metrics.get("decode_tps", 0.0),
    )


@step(name="acquire")
def acquire_task(source, config: AcquireConfig, store_root: Path) -> AcquiredModel:
    model = acquire_model(source, config, store_root=store_root)
    _report(f"acquire {model.source} ({model.param_count:,} params, {model.tier})", model.reused, model.hf_dir)
    return model


@step(name="convert")
def convert_task(model: AcquiredModel, model_name: str, config: convert.ConvertConfig,
                 store_root: Path) -> convert.ConvertedModel:
    result = convert.convert_to_gguf(
        model.hf_dir, architecture=model.architecture, identity=model.identity,
        model_name=model_name, config=config, store_root=store_root,
    )
    _report(f"convert to {config.outtype}", result.reused, result.gguf_path)
    return result


@step(name="quantize", task_run_name="quantize-{quant}")
def quantize_task(base: convert.ConvertedModel, quant: str, model_name: str, threads: int | None,
                  store_root: Path) -> quantize.QuantizedModel:
    result = quantize.quantize_gguf(
        base.gguf_path, quant, base_key=base.key, model_name=model_name, threads=threads, store_root=store_root,
    )
    _report(f"quantize {quant}", result.reused, result.gguf_path)
    return result


@step(name="memory-bandwidth")
def bandwidth_task(store_root: Path, hardware_id: str, threads: int | None) -> float:
    """Read bandwidth of this host, probed once per host and thread count (cached in the store)."""
    from tasks.evaluate.bandwidth import cached_read_bandwidth

    threads = threads or evaluate.default_threads()
    bandwidth = cached_read_bandwidth(store_root / "bandwidth.json", hardware_id, threads)
    get_run_logger().info("memory read bandwidth: %.1f GB/s (%d threads)", bandwidth / 1e9, threads)
    return bandwidth


@step(name="tokenize-eval-text")
def tokens_task(base: convert.ConvertedModel, config: evaluate.EvalConfig, store_root: Path) -> Path:
    return evaluate.prepare_tokens(base.gguf_path, base_key=base.key, config=config, store_root=store_root)


@step(name="evaluate", task_run_name="evaluate-{variant_name}")
def evaluate_task(variant_name: str, variant_path: Path, variant_key: str, base: convert.ConvertedModel | None,
                  tokens_file: Path, config: evaluate.EvalConfig, hardware_id: str,
                  store_root: Path) -> tuple[dict, bool]:
    metrics, reused = evaluate.evaluate_gguf(
        variant_path, variant_key=variant_key, base_gguf=base.gguf_path if base else None,
        base_key=base.key if base else None, tokens_file=tokens_file, config=config,
        hardware_id=hardware_id, store_root=store_root,
    )
    _report_metrics(variant_name, metrics, reused)
    return metrics, reused


@step(name="package", task_run_name="package-{quant}")
def package_task(gguf_path: Path, quant: str, **kwargs) -> package.PackagedVariant:
    result = package.package_gguf_variant(gguf_path, quant=quant, **kwargs)
    _report(f"package {quant} as {result.ollama_tag}", result.reused, result.folder)
    return result


# --- ONNX path (tasks.onnx.step) ---


@step(name="onnx-export", task_run_name="onnx-export-{precision}")
def onnx_export_task(model: AcquiredModel, precision: str, model_name: str, targets: OnnxTargets,
                     store_root: Path) -> onnx_step.OnnxVariantExport:
    result = onnx_step.export_onnx_variant(
        model.hf_dir, identity=model.identity, model_name=model_name, precision=precision,
        targets=targets, store_root=store_root,
    )
    _report(f"onnx export {precision} ({result.wall_s:.1f} s)", result.reused, result.folder)
    return result


@step(name="onnx-evaluate", task_run_name="evaluate-{variant_name}")
def onnx_evaluate_task(variant_name: str, folder: Path, variant_key: str, base: convert.ConvertedModel,
                       tokens_file: Path, config: evaluate.EvalConfig, hardware_id: str,
                       store_root: Path) -> tuple[dict, bool]:
    metrics, reused = onnx_step.evaluate_onnx(
        folder, variant_key=variant_key, base_gguf=base.gguf_path, base_key=base.key, tokens_file=tokens_file,
        config=config, hardware_id=hardware_id, store_root=store_root,
    )
    _report_metrics(variant_name, metrics, reused)
    return metrics, reused


@step(name="onnx-package", task_run_name="package-onnx-{precision}")
def onnx_package_task(folder: Path, precision: str, **kwargs) -> onnx_step.PackagedOnnxVariant:
    result = onnx_step.package_onnx_variant(folder, precision=precision, **kwargs)
    _report(f"package onnx {precision} (smoke answer {result.smoke_answer[:60]!r})", result.reused, result.folder)
    return result
