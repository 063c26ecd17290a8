"""Figures derived from a variant's own measurements and the base's: computed at the flow's
edge, after every variant is measured, so they stay right when measurements come from the store."""

from __future__ import annotations

from tasks.evaluate.bandwidth import decode_efficiency
from tasks.evaluate.humaneval.step import humaneval_flips
from tasks.evaluate.prompt_suite import mean_golden_agreement


def derived_metrics(metrics: dict, base_metrics: dict, *, bandwidth: float | None) -> dict[str, float | str]:
    """perplexity_ratio, golden_agreement (vs the base's greedy answers), HumanEval's flips against
    the base's problems (the flipped ids as text) and the decode's reads.

    decode_read_bytes_per_s is decode_tps x weight bytes: what the decode would read from memory.
    Against the host's measured read limit it gives decode_efficiency, but only up to 1.0: above
    it, some reads were not from DRAM (see `decode_efficiency`), so no efficiency is recorded and
    decode_efficiency_over_limit is 1.0 instead (0.0 when within the limit).
    """
    derived: dict[str, float] = {}
    if "perplexity" in metrics and base_metrics.get("perplexity"):
        derived["perplexity_ratio"] = metrics["perplexity"] / base_metrics["perplexity"]
    if metrics.get("prompts") and base_metrics.get("prompts"):
        derived["golden_agreement"] = mean_golden_agreement(metrics["prompts"], base_metrics["prompts"])
    derived.update(humaneval_flips(metrics, base_metrics))
    if metrics.get("decode_tps") and metrics.get("weight_bytes"):
        derived["decode_read_bytes_per_s"] = metrics["decode_tps"] * metrics["weight_bytes"]
        if bandwidth:
            efficiency = decode_efficiency(metrics["decode_tps"], metrics["weight_bytes"], bandwidth)
            derived["decode_efficiency_over_limit"] = 0.0 if efficiency is not None else 1.0
            if efficiency is not None:
                derived["decode_efficiency"] = efficiency
    return derived
