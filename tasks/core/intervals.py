"""Paired intervals over evaluation chunks: is one variant's figure really above another's?

Two variants scored on the same chunks of the same text err on the same hard passages, so their
difference is read chunk by chunk: the per-chunk differences are resampled with replacement (a
bootstrap over chunks, seeded: the same figures give the same interval) and the middle `level` of
the resampled means is the interval. Chunks, not tokens: tokens within a chunk share their context,
so a standard error over tokens (kld_mean_se) counts them as more independent than they are.

`verdict` says "higher", "lower" or "indistinguishable" (the interval holds 0). With fewer than
MIN_CHUNKS chunks there is no interval; callers then fall back to the standard-error rule and say so.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

# The key of a variant's per-chunk means in its figures (tasks.evaluate.quality): {"nll": [...],
# "kld": [...], "top1": [...]}, chunk by chunk; the f16 base has "nll" only.
CHUNK_SERIES = "chunk_series"
# Each variant run's per-chunk means as MLflow metric histories (step = chunk index): chunk_nll,
# chunk_kld, chunk_top1 (tasks.evaluate.quality's CHUNK_SERIES, logged by tasks.tracking.report).
CHUNK_METRIC_PREFIX = "chunk_"
MIN_CHUNKS = 5  # below this a bootstrap over chunks has too few distinct resamples to mean much
LEVEL = 0.95
RESAMPLES = 4000


class Interval(BaseModel):
    """mean(b - a) over chunks, and its bootstrap interval."""

    mean: float
    low: float
    high: float
    chunks: int
    level: float = Field(LEVEL, description="The share of the resampled means inside [low, high].")

    def verdict(self) -> str:
        """'higher' (b above a beyond noise), 'lower', or 'indistinguishable'."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "indistinguishable"

    def describe(self, digits: int = 3) -> str:
        return (f"{self.mean:+.{digits}g} [{self.low:+.{digits}g}, {self.high:+.{digits}g}] "
                f"({self.level:.0%}, {self.chunks} chunks): {self.verdict()}")


def paired_interval(a: list[float], b: list[float], *, level: float = LEVEL, resamples: int = RESAMPLES,
                    seed: int = 0) -> Interval | None:
    """The interval of mean(b - a) over paired chunks; None when the series cannot be paired (different
    lengths: another text or protocol) or are too short for an interval."""
    if a is None or b is None or len(a) != len(b) or len(a) < MIN_CHUNKS:
        return None
    difference = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.isfinite(difference).all():
        return None
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), size=(resamples, len(difference)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(mean=float(difference.mean()), low=float(low), high=float(high), chunks=len(difference),
                    level=level)


def mean_interval(values: list[float], **kwargs) -> Interval | None:
    """The interval of one series' mean over chunks (paired with zero)."""
    return None if values is None else paired_interval([0.0] * len(values), values, **kwargs)


def ratio_interval(interval: Interval | None) -> tuple[float, float, float] | None:
    """An interval of mean nll differences as a perplexity ratio: exp of each bound."""
    if interval is None:
        return None
    return math.exp(interval.mean), math.exp(interval.low), math.exp(interval.high)


def perplexity_ratio_interval(base_nll: list[float] | None, nll: list[float] | None) -> tuple[float, float] | None:
    """(low, high) of a variant's perplexity over its base's, paired chunk by chunk on their mean nll
    (the gates and compare's table both judge this one interval)."""
    ratio = ratio_interval(paired_interval(base_nll, nll))
    return None if ratio is None else (ratio[1], ratio[2])
