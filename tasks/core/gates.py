"""Quality gates: thresholds a variant must meet to be packaged.

A threshold is a fixed line, but a figure measured on a few chunks of text has noise: a kld_mean of
0.098 against a limit of 0.1 may be 0.104 on the next chunks. Where the variant logged its figures
chunk by chunk (CHUNK_SERIES), each checked figure gets its 95 % bootstrap interval over chunks
(tasks.core.intervals; the perplexity ratio's is paired with the base's chunks), and the gate says
which checks are within noise of their limit (the interval holds it). `noise` decides what such a
check does: "point" (default) judges the figure itself, as llama.cpp's tools print it, and only says
"within noise"; "strict" fails it unless the whole interval is inside the limit (ship only what is
shown to pass); "lenient" fails it only when the whole interval is beyond (reject only what is shown
to fail). kld_p99 has no per-chunk series: it is always judged on the figure.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.intervals import CHUNK_SERIES, mean_interval, perplexity_ratio_interval

NoiseRule = Literal["point", "strict", "lenient"]


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
    noise: NoiseRule = Field(
        "point",
        description="A check whose interval over chunks holds its limit: 'point' judges the figure, 'strict' "
                    "fails it, 'lenient' passes it (module docstring).",
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


class GateVerdict(BaseModel):
    """Why the variant fails (empty = pass), and which checks were within noise of their limit."""

    reasons: list[str] = Field(default_factory=list)
    within_noise: list[str] = Field(default_factory=list)


def figure_intervals(metrics: dict, base_metrics: dict) -> dict[str, tuple[float, float]]:
    """Each gated figure's 95 % interval over chunks, where the chunk series allow one."""
    series, base_series = metrics.get(CHUNK_SERIES) or {}, base_metrics.get(CHUNK_SERIES) or {}
    out = {}
    for name, key in (("kld_mean", "kld"), ("top1_agreement", "top1")):
        if interval := mean_interval(series.get(key)):
            out[name] = (interval.low, interval.high)
    if ratio := perplexity_ratio_interval(base_series.get("nll"), series.get("nll")):
        out["perplexity_ratio"] = ratio
    return out


def judge_gates(metrics: dict, base_metrics: dict, limits: GateThresholds, noise: NoiseRule = "point"
                ) -> GateVerdict:
    """The variant's gate verdict against `limits`, each figure judged with its interval under `noise`."""
    figures = {name: metrics[name] for name in ("kld_mean", "kld_p99", "top1_agreement") if name in metrics}
    if "perplexity" in metrics and base_metrics.get("perplexity"):
        figures["perplexity_ratio"] = metrics["perplexity"] / base_metrics["perplexity"]
    intervals = figure_intervals(metrics, base_metrics)
    checks = (
        ("kld_mean", limits.max_kld_mean, "max"),
        ("kld_p99", limits.max_kld_p99, "max"),
        ("top1_agreement", limits.min_top1_agreement, "min"),
        ("perplexity_ratio", limits.max_ppl_ratio, "max"),
    )
    verdict = GateVerdict()
    for name, limit, kind in checks:
        if limit is None or name not in figures:
            continue
        value = figures[name]
        beyond = value > limit if kind == "max" else value < limit
        shown = f"{value:.4f}" if name == "perplexity_ratio" else f"{value:.4g}"
        label = "perplexity ratio" if name == "perplexity_ratio" else name
        interval = intervals.get(name)
        noisy = interval is not None and interval[0] <= limit <= interval[1]
        if noisy:
            shown += f" [{interval[0]:.4g}, {interval[1]:.4g}]"
            beyond = {"point": beyond, "strict": True, "lenient": False}[noise]
        sign = (">" if kind == "max" else "<") if beyond else ("<=" if kind == "max" else ">=")
        line = f"{label} {shown} {sign} {limit:g}"
        if noisy:
            verdict.within_noise.append(f"{line} (interval over chunks holds the limit; gates.noise={noise})")
        if beyond:
            verdict.reasons.append(line + (" within noise" if noisy else ""))
    return verdict


def check_gates(metrics: dict[str, float], base_perplexity: float, limits: GateThresholds) -> list[str]:
    """Reasons the variant fails on its point figures (empty list = pass)."""
    return judge_gates(metrics, {"perplexity": base_perplexity}, limits).reasons
