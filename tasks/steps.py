"""Step logic that more than one flow runs: one variant's measurement, and the gates over a run's
variants (the pipeline measures here; a hardware class's worker measures on its own machine)."""

from __future__ import annotations

from tasks.config import PipelineConfig
from tasks.core.errors import SlmforgeError
from tasks.core.gates import judge_gates
from tasks.evaluate.derived import derived_metrics
from tasks.evaluate.measure import MEASUREMENT_KEY
from tasks.prefect_tasks import measure_task
from tasks.variants import VariantOutcome


def measure_variant(outcome: VariantOutcome, **kwargs) -> None:
    """Figures of one variant; any failure (a crash, a timeout, a bug) becomes its error alone."""
    config = kwargs.pop("config")
    try:
        outcome.metrics, outcome.reused = measure_task(
            outcome.variant.name, outcome.built, config=config.evaluate, store_root=config.store_dir,
            is_base=outcome.variant.is_base, **kwargs,
        )
    except Exception as exc:  # noqa: BLE001 - isolate the variant; the message names what failed
        outcome.error = str(exc) if isinstance(exc, SlmforgeError) else f"{type(exc).__name__}: {exc}"
        return
    outcome.measurement = outcome.metrics.pop(MEASUREMENT_KEY, None)
    if outcome.built.build_s is not None:
        outcome.metrics["build_s"] = outcome.built.build_s


def apply_gates(outcomes: list[VariantOutcome], config: PipelineConfig, hardware: dict) -> None:
    """Derived figures (ratio to base, golden agreement, decode efficiency), then the gates."""
    base = next(o for o in outcomes if o.variant.is_base)
    base_ppl = base.metrics.get("perplexity")
    for outcome in outcomes:
        if outcome.error or base_ppl is None:
            continue
        outcome.metrics.update(derived_metrics(
            outcome.metrics, base.metrics, bandwidth=hardware.get("read_bandwidth_bytes_per_s"),
        ))
        verdict = judge_gates(outcome.metrics, base.metrics, config.gates.for_quant(outcome.variant.quant),
                              config.gates.noise)
        outcome.gate_reasons, outcome.gate_within_noise = verdict.reasons, verdict.within_noise
        outcome.gate = "fail" if outcome.gate_reasons else "pass"
