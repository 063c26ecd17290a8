"""Regressions: did a figure get worse than the previous run of the same config on the same host?

The rule (also in the README): for each variant present in both runs, a figure regressed when it
moved in its worse direction by more than `sigmas` x sqrt(noise_old^2 + noise_new^2) AND by more
than `min_relative_change` of the old value.

Quality figures are judged chunk by chunk where both runs logged their per-chunk means
(`chunk_series`: nll, kld, top1): the paired 95 % bootstrap interval over chunks of new - old
(tasks.core.intervals) must lie wholly on the worse side; else with their standard error
(perplexity_se, kld_mean_se, top1_agreement_se: token-to-token spread of one pass). Only between runs
that scored the same tokens (param `eval_text`: the text's sha256, context and chunks); measured on another text, or with
no record of the text, they are listed as not judged, with the two texts.

Speed figures are judged per anchor: each burst was timed beside the same burst of the run's f16
base (tasks.evaluate.anchor), so host drift, which moves both, cancels in `<figure>_rel`, and its
noise is `<figure>_rel_se`, the spread between rounds, drift included. A burst's own sd is not used:
on these hosts one file decoded at 135 and 104 tok/s an hour apart with a burst sd of a few tok/s.
Speed figures without the same anchor on both sides (the f16 base itself, runs from before the
anchor, `speed_anchor: false`) are listed as not judged, as is time to first token (NOT_JUDGED_SPEED).
Figures reused from the store are the same numbers, so they never regress.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from tasks.evaluate.domains import domains_measured, figure_name
from tasks.core.intervals import CHUNK_SERIES, Interval, paired_interval

# figure -> (its noise figure, the better direction)
QUALITY = {"perplexity": ("perplexity_se", "lower"), "kld_mean": ("kld_mean_se", "lower"),
           "top1_agreement": ("top1_agreement_se", "higher")}
# quality figure -> its per-chunk series (CHUNK_SERIES, tasks.evaluate.quality)
CHUNK_OF = {"perplexity": "nll", "kld_mean": "kld", "top1_agreement": "top1"}
SPEED = {"prefill_tps": "higher", "decode_tps": "higher", "ttft_ms": "lower"}
# Listed as not judged: a first-token burst takes ~10 ms on a small model, too short for its ratio to
# the anchor to mean much; two runs of one commit moved it by 15 % (tests/benchmarks/speed_regression_proof.py).
NOT_JUDGED_SPEED = {"ttft_ms": "a first-token burst (~10 ms) is too short for its ratio to the anchor to be trusted"}
EVAL_TEXT = "eval_text"  # the param every variant run carries: the tokens its quality figures were measured on
SPEED_ANCHOR = "speed_anchor"  # the param naming the f16 its speed figures per anchor were timed beside


class RegressionConfig(BaseModel):
    """How a run is compared with the previous run of the same config on the same hardware id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fail_on_regression: bool = Field(
        False, description="End the flow run Failed when a regression is found (set true for scheduled "
        "and deployment runs, so the Prefect UI shows it); otherwise regressions are tagged and listed only.",
    )
    sigmas: float = Field(2.0, gt=0, description="A change must exceed this many combined standard errors to count.")
    min_relative_change: float = Field(
        0.05, ge=0, description="...and this share of the old value: a few rounds can give a small se by chance.",
    )


class Change(BaseModel):
    """One figure of one variant that got worse beyond noise."""

    variant: str
    figure: str
    kind: str = Field(description="quality or speed")
    old: float
    new: float
    noise: float = Field(description="sigmas x combined se, or the paired interval's reach below the change: "
                         "the largest change still counted as noise.")
    interval: str | None = Field(None, description="The paired interval over chunks it was judged on, if any.")

    def describe(self) -> str:
        judged = f"; per chunk {self.interval}" if self.interval else ""
        return (f"{self.variant}: {self.figure} {self.old:.4g} -> {self.new:.4g} "
                f"(change {self.new - self.old:+.3g}, noise {self.noise:.2g}{judged})")


def quality_rules(metrics: dict) -> dict[str, tuple[str, str]]:
    """quality figure -> (noise figure, better direction): the main text's, and each evaluation
    domain's in `metrics` (`code/kld_mean` with `code/kld_mean_se`; tasks.evaluate.domains)."""
    rules = dict(QUALITY)
    for domain in domains_measured(metrics):
        rules |= {figure_name(domain, name): (figure_name(domain, noise), better)
                  for name, (noise, better) in QUALITY.items()}
    return rules


def figure_rules(metrics: dict) -> dict[str, tuple[str, str, str]]:
    """figure -> (noise figure, better direction, kind) for every judged figure in `metrics` (a speed
    figure is judged by its `_rel`, with this `_rel_se`)."""
    rules = {name: (noise, better, "quality") for name, (noise, better) in quality_rules(metrics).items()}
    speed = dict(SPEED) | {name: "higher" for name in metrics if name.startswith("decode_tps_d") and
                           not name.endswith(("_sd", "_rel", "_rel_se", "_anchor"))}
    rules |= {name: (f"{name}_rel_se", better, "speed") for name, better in speed.items()}
    return rules


def find_regressions(previous: dict[str, dict], current: dict[str, dict],
                     config: RegressionConfig) -> tuple[list[Change], list[str]]:
    """(regressions, figures not judged, with why); keyed by variant name. A speed change is named by its
    figure per anchor (`decode_tps_rel`: the variant's decode speed over the f16's, timed side by side)."""
    changes, unjudged = [], []
    for variant, new in current.items():
        old = previous.get(variant)
        if not old:
            continue
        texts = old.get(EVAL_TEXT), new.get(EVAL_TEXT)
        same_text = texts[0] is not None and texts[0] == texts[1]
        if not same_text:
            unjudged.append(f"{variant}: quality figures (measured on another text: {texts[0] or 'unrecorded'} "
                            f"before, {texts[1] or 'unrecorded'} now)")
        same_anchor = old.get(SPEED_ANCHOR) is not None and old.get(SPEED_ANCHOR) == new.get(SPEED_ANCHOR)
        for figure, (noise_name, better, kind) in figure_rules(new).items():
            if not (_num(old.get(figure)) is not None and _num(new.get(figure)) is not None):
                continue
            if kind == "quality" and not same_text:
                continue
            if kind == "quality" and (paired := _paired(figure, old, new)) is not None:
                if (change := _paired_change(variant, figure, better, old, new, paired, config)) is not None:
                    changes.append(change)
                continue
            if kind == "speed":  # judged per anchor: the ratio and the noise between rounds
                if figure in NOT_JUDGED_SPEED:
                    unjudged.append(f"{variant}: {figure} (not judged: {NOT_JUDGED_SPEED[figure]})")
                    continue
                if not same_anchor:
                    unjudged.append(f"{variant}: {figure} (not timed beside the same f16 anchor in both runs: "
                                    "host drift cannot be told from a change)")
                    continue
                figure, noise_name = f"{figure}_rel", f"{figure}_rel_se"
            noise_old, noise_new = _num(old.get(noise_name)), _num(new.get(noise_name))
            if noise_old is None or noise_new is None or _num(old.get(figure)) is None or _num(new.get(figure)) is None:
                unjudged.append(f"{variant}: {figure} (no {noise_name})")
                continue
            a, b = float(old[figure]), float(new[figure])
            noise = config.sigmas * math.hypot(noise_old, noise_new)
            worse = (b - a) if better == "lower" else (a - b)
            if worse > noise and worse > config.min_relative_change * abs(a):
                changes.append(Change(variant=variant, figure=figure, kind=kind, old=a, new=b, noise=noise))
    return changes, unjudged


def _paired(figure: str, old: dict, new: dict) -> Interval | None:
    """new - old per chunk, where both runs logged the figure's chunk series over the same chunks."""
    domain, _, own = figure.rpartition("/")  # a domain's figure pairs with that domain's series
    chunk = figure_name(domain, CHUNK_OF[own]) if domain else CHUNK_OF[own]
    series = [(side.get(CHUNK_SERIES) or {}).get(chunk) for side in (old, new)]
    return paired_interval(*series)


def _paired_change(variant: str, figure: str, better: str, old: dict, new: dict, interval: Interval,
                   config: RegressionConfig) -> Change | None:
    """A regression when the whole interval is on the worse side and the change passes the floor."""
    a, b = float(old[figure]), float(new[figure])
    worse_side = interval.low > 0 if better == "lower" else interval.high < 0
    worse = (b - a) if better == "lower" else (a - b)
    if not (worse_side and worse > config.min_relative_change * abs(a)):
        return None
    # The interval's reach towards no change, in the figure's units (perplexity: exp of mean nll).
    reach = abs(interval.mean - (interval.low if better == "lower" else interval.high))
    is_perplexity = figure.rpartition("/")[2] == "perplexity"
    noise = a * (math.exp(interval.mean) - math.exp(interval.mean - reach)) if is_perplexity else reach
    return Change(variant=variant, figure=figure, kind="quality", old=a, new=b, noise=noise,
                  interval=interval.describe())


def moved_with_build(previous: dict[str, dict], current: dict[str, dict],
                     config: RegressionConfig) -> list[Change]:
    """Quality figures that moved either way beyond noise (sigmas x combined se), on the same text.
    Called when a tool's version changed since the previous run of the same config: the weights
    and the text are the same, so such a move is the build's doing (llama.cpp has changed kernels
    and quantizers between releases); better or worse, a reviewer should know."""
    moves = []
    for variant, new in current.items():
        old = previous.get(variant)
        if not old or old.get(EVAL_TEXT) is None or old.get(EVAL_TEXT) != new.get(EVAL_TEXT):
            continue
        for figure, (noise_name, _) in quality_rules(new).items():
            a, b = _num(old.get(figure)), _num(new.get(figure))
            noise_old, noise_new = _num(old.get(noise_name)), _num(new.get(noise_name))
            if None in (a, b, noise_old, noise_new):
                continue
            noise = config.sigmas * math.hypot(noise_old, noise_new)
            if abs(b - a) > noise:
                moves.append(Change(variant=variant, figure=figure, kind="quality", old=a, new=b, noise=noise))
    return moves


def changed_versions(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """'name old -> new' for every tool whose version differs (a new version re-measures: it is
    part of every cache key, tasks.store.versions)."""
    names = sorted(set(previous) | set(current))
    return [f"{n} {previous.get(n, 'absent')} -> {current.get(n, 'absent')}" for n in names
            if previous.get(n) != current.get(n)]


def _num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)
