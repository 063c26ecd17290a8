"""Quality gates: thresholds a variant must meet to be packaged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GateThresholds(BaseModel):
    """Limits on a variant's quality against the f16 base; unset limits are not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_kld_mean: float | None = Field(None, gt=0, description="Largest mean KL divergence (nats).")
    max_kld_p99: float | None = Field(None, gt=0, description="Largest 99th-percentile KLD (nats).")
    max_ppl_ratio: float | None = Field(None, ge=1, description="Largest perplexity / base perplexity.")
    min_top1_agreement: float | None = Field(None, ge=0, le=1, description="Smallest same-top-token share.")


class GateConfig(GateThresholds):
    """Default thresholds plus overrides per quant type or family prefix (e.g. 'Q4' or 'Q4_K_M')."""

    per_quant: dict[str, GateThresholds] = Field(
        default_factory=dict,
        description="Changes to the defaults for quants whose name starts with the key; unset limits inherit.",
    )

    def for_quant(self, quant: str) -> GateThresholds:
        """The defaults, changed by every matching override from the shortest prefix to the longest.

        Only the limits an override sets take part: `Q4: {max_ppl_ratio: 1.3}` relaxes the
        perplexity limit of Q4 quants and keeps every other default, so adding an override never
        silently drops a check. To turn a default check off for some quants, set it to null there
        (an explicit null is a set field). A longer prefix's set limits win over a shorter one's.
        """
        limits = {name: getattr(self, name) for name in GateThresholds.model_fields}
        matches = sorted((k for k in self.per_quant if quant.upper().startswith(k.upper())), key=len)
        for key in matches:
            override = self.per_quant[key]
            limits.update({name: getattr(override, name) for name in override.model_fields_set})
        return GateThresholds(**limits)


def check_gates(metrics: dict[str, float], base_perplexity: float, limits: GateThresholds) -> list[str]:
    """Reasons the variant fails (empty list = pass)."""
    reasons = []
    checks = (
        ("kld_mean", limits.max_kld_mean, "max"),
        ("kld_p99", limits.max_kld_p99, "max"),
        ("top1_agreement", limits.min_top1_agreement, "min"),
    )
    for name, limit, kind in checks:
        if limit is None or name not in metrics:
            continue
        value = metrics[name]
        if (kind == "max" and value > limit) or (kind == "min" and value < limit):
            reasons.append(f"{name} {value:.4g} {'>' if kind == 'max' else '<'} {limit:g}")
    if limits.max_ppl_ratio is not None and "perplexity" in metrics:
        ratio = metrics["perplexity"] / base_perplexity
        if ratio > limits.max_ppl_ratio:
            reasons.append(f"perplexity ratio {ratio:.4f} > {limits.max_ppl_ratio:g}")
    return reasons
