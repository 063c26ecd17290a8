"""Paired intervals over chunks (tasks.core.intervals) and the verdicts that use them: recommend's
quality tie and the regression rule. Series chosen by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.core.intervals import CHUNK_SERIES, MIN_CHUNKS, mean_interval, paired_interval, ratio_interval
from tasks.review.regressions import RegressionConfig, find_regressions

# Hard and easy chunks: both variants err most on the same ones, so their difference is steady even
# though each series spreads widely.
HARD = np.array([0.010, 0.002, 0.030, 0.004, 0.020, 0.001, 0.015, 0.003])


def test_a_steady_difference_under_a_wide_spread_is_seen_when_paired():
    a, b = HARD, HARD * 1.15  # b is 15 % worse on every chunk
    interval = paired_interval(list(a), list(b))
    assert interval.verdict() == "higher" and interval.low > 0
    assert interval.mean == pytest.approx(float((b - a).mean()))
    # Unpaired, the two means' own intervals overlap widely: the pairing is what tells them apart.
    ia, ib = mean_interval(list(a)), mean_interval(list(b))
    assert ia.high > ib.low


def test_noise_either_way_is_indistinguishable_and_the_interval_is_reproducible():
    rng = np.random.default_rng(1)
    a = HARD
    b = HARD + rng.normal(0, 0.002, len(HARD))
    b = b - (b - a).mean()  # no difference on average
    interval = paired_interval(list(a), list(b))
    assert interval.verdict() == "indistinguishable" and interval.low < 0 < interval.high
    assert paired_interval(list(a), list(b)) == interval  # seeded: the same figures, the same interval
    assert "indistinguishable" in interval.describe()


def test_no_interval_from_unpaired_or_too_few_chunks():
    assert paired_interval([0.1] * 8, [0.1] * 7) is None  # another text or protocol
    assert paired_interval([0.1] * (MIN_CHUNKS - 1), [0.2] * (MIN_CHUNKS - 1)) is None
    assert paired_interval(None, [0.1] * 8) is None


def test_a_perplexity_ratio_interval_is_exp_of_the_mean_nll_difference():
    base = [2.0, 2.5, 3.0, 2.2, 2.8, 2.4]
    variant = [x + 0.02 for x in base]
    mean, low, high = ratio_interval(paired_interval(base, variant))
    assert mean == pytest.approx(math.exp(0.02)) and low == pytest.approx(mean) and high == pytest.approx(mean)


def _figures(kld: float, series: list[float]) -> dict:
    return {"kld_mean": kld, "kld_mean_se": 1e-6, "eval_text": "t:ctx512x8", CHUNK_SERIES: {"kld": series}}


def test_regressions_judge_quality_chunk_by_chunk_when_both_runs_have_the_chunks():
    """A se over tokens of 1e-6 would call a 20 % move a regression whatever the chunks say; paired
    over chunks, a move that some chunks contradict is noise, and one every chunk shows is not."""
    old = _figures(float(HARD.mean()), list(HARD))
    shuffled = list(HARD[[1, 0, 3, 2, 5, 4, 7, 6]] * 1.2)  # +20 % on average, chunk by chunk all over
    noisy = _figures(float(np.mean(shuffled)), shuffled)
    changes, _ = find_regressions({"v": old}, {"v": noisy}, RegressionConfig())
    assert changes == []
    worse = _figures(float(HARD.mean() * 1.2), list(HARD * 1.2))
    changes, _ = find_regressions({"v": old}, {"v": worse}, RegressionConfig())
    assert [c.figure for c in changes] == ["kld_mean"] and "per chunk" in changes[0].describe()
    # Without the chunks on one side: the standard-error rule, as before.
    bare = {k: v for k, v in old.items() if k != CHUNK_SERIES}
    assert [c.figure for c in find_regressions({"v": bare}, {"v": noisy}, RegressionConfig())[0]] == ["kld_mean"]
