"""Figures derived from a variant's own measurements and the base's: computed at the flow's
edge, after every variant is measured, so they stay right when measurements come from the store."""

from __future__ import annotations

from tasks.evaluate.bandwidth import decode_efficiency
from tasks.evaluate.prompt_suite import mean_golden_agreement


def derived_metrics(metrics: dict, base_metrics: dict, *, bandwidth: float | None) -> dict[str, float]:
    """perplexity_ratio, golden_agreement (vs the base's greedy answers) and decode_efficiency."""
    derived: dict[str, float] = {}
    if "perplexity" in metrics and base_metrics.get("perplexity"):
        derived["perplexity_ratio"] = metrics["perplexity"] / base_metrics["perplexity"]
    if metrics.get("prompts") and base_metrics.get("prompts"):
        derived["golden_agreement"] = mean_golden_agreement(metrics["prompts"], base_metrics["prompts"])
    if bandwidth and metrics.get("decode_tps") and metrics.get("weight_bytes"):
        derived["decode_efficiency"] = decode_efficiency(metrics["decode_tps"], metrics["weight_bytes"], bandwidth)
    return derived
