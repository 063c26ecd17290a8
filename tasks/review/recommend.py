"""Which variant to ship to a device: the best passing variant that fits, and why better ones did not.

The ranking rule (also in the README):
1. Candidates: the latest child run of each variant (model x format x quant); runs measured on the
   device itself (profile `hardware_id`) when there are any, else the latest from any host.
2. Eligible: run finished without error, gate `pass`, figures present (kld_mean; the f16 base is the
   reference, its KLD is 0 by definition), and it fits: weights + KV cache at the device's context
   and cache type + the overhead its run measured <= budget x (1 - margin) (tasks.review.fit).
3. Quality first: the lowest kld_mean among the eligible. Variants whose kld_mean is within the noise
   of that one tie: where both runs logged their per-chunk KLD (metric history chunk_kld), the paired
   95 % bootstrap interval over chunks of the difference holds 0 ("indistinguishable",
   tasks.core.intervals); else the difference is <= 2 x sqrt(se_a^2 + se_b^2) (kld_mean_se);
   a tie goes to the faster decode (measured on the device, else predicted), then to the smaller file.
   Two decode speeds timed beside the same f16 anchor (param `speed_anchor`) are compared per anchor
   (`decode_tps_rel`, drift cancelled) and are indistinguishable when they differ by <= 2 x
   sqrt(se_a^2 + se_b^2) (`decode_tps_rel_se`, the noise between rounds); among the variants as fast
   as the fastest within that noise, the smaller file wins.
   `--domain code`: the same rule on that evaluation domain's figures (`code/kld_mean`, its se and
   chunk series) instead of the main text's.
4. One text: quality figures are ranked only against figures measured on the same tokens (param
   `eval_text`). When the candidates' texts differ, the newest run's text is the one ranked; the
   others are excluded, saying which text they were measured on.
Per tier (tag slmforge.tier): each KLD is against that model's own reference, so it ranks quants of
comparable models; a 1.5B's Q4 and a 135M's Q8 answer different needs. `recommend_per_tier` gives one
answer per tier, smallest tier first.
Speed where the device was never measured: decode_tps = decode_efficiency x device bandwidth /
weight_bytes (bytes read per token), marked predicted; no bandwidth or no efficiency: none.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from tasks.review.devices import DeviceProfile
from tasks.review.fit import Fit, KvLayout, fit_variant, runtime_overhead
from tasks.core.intervals import paired_interval

TIE_SIGMAS = 2.0
BASE_QUANTS = ("F16", "BF16", "F32")


class Candidate(BaseModel):
    """One variant's latest measured run, judged for one device."""

    name: str
    format: str
    quant: str
    run_id: str
    hardware_id: str = ""
    kld_mean: float | None = None
    kld_mean_se: float = 0.0
    size_bytes: float | None = None
    reference: str | None = Field(None, description="What its kld_mean is against (param `reference`).")
    eval_text: str | None = Field(None, description="The tokens its quality was measured on (param `eval_text`).")
    decode_tps: float | None = None
    speed_kind: str = Field("none", description="measured (on this device), predicted, or none")
    decode_tps_rel: float | None = Field(None, description="Measured decode speed per f16 anchor (drift cancelled).")
    decode_tps_rel_se: float = 0.0
    speed_anchor: str | None = Field(None, description="The f16 that decode_tps_rel was timed beside.")
    chunk_kld: list[float] | None = Field(None, description="Mean KLD of each evaluation chunk (paired intervals).")
    quality_vs_best: str | None = Field(None, description="kld_mean minus the best one's, with its paired interval.")
    quality_tied: bool | None = Field(None, description="Tied with the best on quality within noise (None: not judged).")
    fit: Fit | None = None
    excluded: str | None = Field(None, description="Why it cannot be recommended; None when eligible.")


class Recommendation(BaseModel):
    device: DeviceProfile
    tier: str | None = Field(None, description="The model tier these candidates are of; None: all tiers together.")
    pick: Candidate | None
    candidates: list[Candidate] = Field(description="Every variant, best quality first.")
    measured_on_device: bool
    notes: list[str] = Field(default_factory=list, description="Why the better-ranked ones lost.")


def recommend(runs, device: DeviceProfile) -> Recommendation:
    """`runs`: mlflow.search_runs' DataFrame of child runs (params.*, metrics.*, tags.* columns)."""
    runs, on_device = _latest_runs(runs, device.hardware_id)
    text = _ranked_text(runs)
    candidates = sorted((judge(row, device, measured=on_device, text=text) for row in runs.to_dict("records")),
                        key=lambda c: (c.kld_mean is None, c.kld_mean if c.kld_mean is not None else 0, c.name))
    eligible = [c for c in candidates if c.excluded is None]
    pick = _pick(eligible)
    return Recommendation(device=device, pick=pick, candidates=candidates, measured_on_device=on_device,
                          notes=_why_not(candidates, pick))


def on_domain(runs, domain: str):
    """`runs` with the quality figures of evaluation domain `domain` (tasks.evaluate.domains) in place
    of the main text's, so the same rule ranks on them; a run without them is excluded for it."""
    runs = runs.copy()
    for figure in ("kld_mean", "kld_mean_se", "chunks"):
        column = f"metrics.{domain}/{figure}"
        runs[f"metrics.{figure}"] = runs[column] if column in runs else float("nan")
    runs["chunks.kld"] = runs.get(f"chunks.{domain}/kld")
    if f"metrics.{domain}/chunks" not in runs or runs[f"metrics.{domain}/chunks"].isna().all():
        raise ValueError(f"no run has figures of the evaluation domain {domain!r}: measure it first "
                         "(evaluate.domains in the config) or leave --domain out")
    return runs


TIER_ORDER = ("micro", "small", "medium", "large")
TIER_TAG = "tags.slmforge.tier"


def recommend_per_tier(runs, device: DeviceProfile) -> list[Recommendation]:
    """One recommendation per model tier, smallest tier first (runs without the tag: tier 'unknown')."""
    if runs.empty or TIER_TAG not in runs:
        return [recommend(runs, device).model_copy(update={"tier": "unknown" if not runs.empty else None})]
    tiers = runs[TIER_TAG].fillna("unknown").astype(str)
    order = sorted(tiers.unique(), key=lambda t: (TIER_ORDER.index(t) if t in TIER_ORDER else len(TIER_ORDER), t))
    return [recommend(runs[tiers == tier], device).model_copy(update={"tier": tier}) for tier in order]


def _why_not(candidates: list[Candidate], pick: Candidate | None) -> list[str]:
    """Why each candidate ranked above the pick lost (all of them when there is no pick)."""
    if pick is None:
        return [f"{c.name}: {c.excluded}" for c in candidates]
    notes = []
    for c in candidates[:candidates.index(pick)]:
        if c.excluded:
            notes.append(f"{c.name}: {c.excluded}")
        elif c.quality_tied is False:  # a narrower interval than the pick's: beyond noise where the pick is not
            notes.append(f"{c.name}: worse on quality beyond noise ({c.quality_vs_best})")
        elif speed_indistinguishable(c, pick):
            notes.append(f"{c.name}: tied on quality and on speed within noise ({c.decode_tps_rel:.3f} vs "
                         f"{pick.decode_tps_rel:.3f} x the f16's decode, timed side by side), and larger")
        else:
            judged = c.quality_vs_best or pick.quality_vs_best  # the best one has none of its own
            interval = f"; {judged}" if judged else ""
            notes.append(f"{c.name}: tied on quality within noise{interval}, but decodes slower "
                         f"({_tps(c)} vs {_tps(pick)}) or is larger")
    # No quality figure: it cannot be ranked, so it may have been better; say why it is out.
    return notes + [f"{c.name}: {c.excluded}" for c in candidates if c.kld_mean is None and c.excluded]


def _latest_runs(runs, hardware_id: str | None):
    """The newest run per variant (and per host: measured-on-device runs win when there are some)."""
    on_device = bool(hardware_id) and "tags.slmforge.hardware_id" in runs and \
        (runs["tags.slmforge.hardware_id"] == hardware_id).any()
    if on_device:
        runs = runs[runs["tags.slmforge.hardware_id"] == hardware_id]
    runs = runs.sort_values("start_time", ascending=False)
    return runs.drop_duplicates(subset=["tags.mlflow.runName"]), on_device


def _ranked_text(runs) -> str | None:
    """The evaluation text the ranking uses: None when every candidate shares one (or none is
    recorded); else the newest run's."""
    if runs.empty or "params.eval_text" not in runs or runs["params.eval_text"].nunique(dropna=False) <= 1:
        return None
    return _text(runs["params.eval_text"].iloc[0]) or "unrecorded"  # runs: newest first


def judge(row: dict, device: DeviceProfile, *, measured: bool, text: str | None = None) -> Candidate:
    """One run's figures, speed and fit on `device`; `excluded` says why it cannot be shipped."""
    metric = lambda name: _number(row.get(f"metrics.{name}"))  # noqa: E731 - a local shorthand
    quant = str(row.get("params.quant") or "")
    is_base = row.get("tags.slmforge.is_base") == "true" or (metric("kld_mean") is None and quant.upper()
                                                             in BASE_QUANTS and metric("perplexity") is not None)
    candidate = Candidate(
        name=str(row.get("tags.mlflow.runName")), format=str(row.get("params.format") or ""), quant=quant,
        run_id=str(row["run_id"]), hardware_id=str(row.get("tags.slmforge.hardware_id") or ""),
        kld_mean=0.0 if is_base else metric("kld_mean"), kld_mean_se=0.0 if is_base else metric("kld_mean_se") or 0.0,
        size_bytes=metric("size_bytes"), reference=_text(row.get("params.reference")) or None,
        eval_text=_text(row.get("params.eval_text")) or None,
    )
    candidate.decode_tps, candidate.speed_kind = _speed(metric, device, measured=measured)
    if candidate.speed_kind == "measured" and metric("decode_tps_rel") is not None:
        candidate.decode_tps_rel, candidate.decode_tps_rel_se = metric("decode_tps_rel"), metric("decode_tps_rel_se") or 0.0
        candidate.speed_anchor = _text(row.get("params.speed_anchor")) or None
    candidate.chunk_kld = _chunk_kld(row, metric, is_base)
    candidate.fit, missing = _fit(row, metric, device)
    candidate.excluded = _exclusion(row, candidate, missing, text)
    return candidate


def _exclusion(row: dict, c: Candidate, missing: list[str], text: str | None = None) -> str | None:
    if row.get("status") == "FAILED" or _text(row.get("tags.slmforge.error")):
        return f"run failed: {_text(row.get('tags.slmforge.error')) or row.get('status')}"
    gate = _text(row.get("tags.slmforge.gate")) or "not-checked"
    if gate != "pass":
        reasons = _text(row.get("tags.slmforge.gate_reasons"))
        return f"gate {gate}" + (f": {reasons}" if reasons and reasons != "-" else "")
    if text is not None and (c.eval_text or "unrecorded") != text:
        return (f"quality measured on another text ({c.eval_text or 'unrecorded'}) than the newest runs' ({text}): "
                "not ranked against them; run the pipeline again to measure it on that text")
    if c.kld_mean is None:
        missing = ["kld_mean", *missing]
    if missing:
        return f"no figures: {', '.join(missing)} not recorded (run the pipeline again to record them)"
    if not c.fit.fits:
        return f"does not fit: {c.fit.explain()}"
    return None


def _fit(row: dict, metric, device: DeviceProfile) -> tuple[Fit | None, list[str]]:
    needed = ["size_bytes", "peak_rss_bytes"]
    missing = [f"metrics.{n}" for n in needed if metric(n) is None]
    missing += [p for p in ("params.model.n_layer", "params.speed_n_ctx") if not _text(row.get(p))]
    if missing:
        return None, missing
    layout = KvLayout.from_params({k.removeprefix("params."): v for k, v in row.items() if k.startswith("params.")})
    own_kv = _text(row.get("params.runtime_kv_type")) or None
    # ONNX Runtime GenAI sizes its KV buffer per generator (max_length of each timed test), not by
    # speed_n_ctx: nothing is subtracted there, so its small measured KV counts as overhead (an upper bound).
    measured_ctx = 0 if own_kv else int(row["params.speed_n_ctx"])
    overhead = runtime_overhead(peak_rss_bytes=metric("peak_rss_bytes"), weights_bytes=metric("size_bytes"),
                                layout=layout, measured_ctx=measured_ctx, kv_type=own_kv or "f16")
    return fit_variant(weights_bytes=metric("size_bytes"), overhead_bytes=overhead, layout=layout, device=device,
                       fixed_kv_type=own_kv), []


def _speed(metric, device: DeviceProfile, *, measured: bool) -> tuple[float | None, str]:
    if measured and metric("decode_tps") is not None:
        return metric("decode_tps"), "measured"
    efficiency, weight_bytes = metric("decode_efficiency"), metric("weight_bytes")
    if device.memory_bandwidth and efficiency and weight_bytes:
        return efficiency * device.memory_bandwidth / weight_bytes, "predicted"
    return None, "none"


def _pick(eligible: list[Candidate]) -> Candidate | None:
    if not eligible:
        return None
    best = eligible[0]  # sorted by kld_mean
    tied = [c for c in eligible if c is best or _quality_tied(c, best)]
    fastest = max(tied, key=lambda c: (c.decode_tps or 0.0, -(c.size_bytes or 0.0)))
    anchored = [c for c in tied if _same_anchor(c, fastest)]
    if len(anchored) > 1:  # per anchor: the fastest without drift, then every one as fast within noise
        fastest = max(anchored, key=lambda c: c.decode_tps_rel)
        as_fast = [c for c in anchored if speed_indistinguishable(c, fastest)]
        return min(as_fast, key=lambda c: (c.size_bytes if c.size_bytes is not None else math.inf, c.name))
    return fastest


def _quality_tied(c: Candidate, best: Candidate) -> bool:
    """Paired over chunks where both have them (and says so on the candidate); else the se rule."""
    interval = paired_interval(best.chunk_kld, c.chunk_kld)
    if interval is not None:
        c.quality_vs_best = f"kld_mean {interval.describe()} against {best.name}"
        c.quality_tied = interval.verdict() != "higher"
    else:
        c.quality_tied = c.kld_mean - best.kld_mean <= TIE_SIGMAS * math.hypot(best.kld_mean_se, c.kld_mean_se)
    return c.quality_tied


def _chunk_kld(row: dict, metric, is_base: bool) -> list[float] | None:
    """The per-chunk KLD read back by tasks.review.search.with_chunk_series; the f16 base's is 0 on
    every chunk it was scored on (it is the reference)."""
    if is_base:
        return [0.0] * int(metric("chunks")) if metric("chunks") else None
    series = row.get("chunks.kld")
    return [float(v) for v in series] if isinstance(series, list) and series else None


def _same_anchor(a: Candidate, b: Candidate) -> bool:
    return None not in (a.decode_tps_rel, b.decode_tps_rel, a.speed_anchor) and a.speed_anchor == b.speed_anchor


def speed_indistinguishable(a: Candidate, b: Candidate) -> bool:
    """Decode speeds per the same f16 anchor within TIE_SIGMAS x their combined noise between rounds."""
    return _same_anchor(a, b) and \
        abs(a.decode_tps_rel - b.decode_tps_rel) <= TIE_SIGMAS * math.hypot(a.decode_tps_rel_se, b.decode_tps_rel_se)


def _tps(c: Candidate) -> str:
    return "no speed" if c.decode_tps is None else f"{c.decode_tps:.1f} tok/s {c.speed_kind}"


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
