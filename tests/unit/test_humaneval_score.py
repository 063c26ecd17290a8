"""HumanEval scoring (tasks.evaluate.humaneval.score): pass@1, Wilson intervals, flips, paired test."""

from __future__ import annotations

import pytest

from tasks.evaluate.humaneval.score import flips, mcnemar_exact, pass_at_1, paired, wilson


def results(passed: int, total: int, offset: int = 0) -> dict[str, bool]:
    return {f"HumanEval/{i}": offset <= i < offset + passed for i in range(total)}


def test_wilson_matches_the_textbook_values():
    low, high = wilson(81, 263)  # Newcombe (1998), example: 0.2553 to 0.3662
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 164)[0] == 0.0 and wilson(164, 164)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total=0"):
        wilson(0, 0)


def test_pass_at_1_with_interval_and_ids():
    score = pass_at_1({"HumanEval/0": True, "HumanEval/1": False, "HumanEval/2": True, "HumanEval/3": True})
    assert (score.passed, score.total, score.pass_at_1) == (3, 4, 0.75)
    assert score.low < 0.75 < score.high and score.passed_ids == ["HumanEval/0", "HumanEval/2", "HumanEval/3"]


def test_flips_both_ways():
    f = flips({"a", "b", "c"}, ["b", "c", "d"])
    assert f.lost == ["a"] and f.gained == ["d"]


def test_exact_mcnemar():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # all six flips one way
    assert mcnemar_exact(10, 0) == mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def test_paired_identical_variants_are_indistinguishable():
    same = paired(results(80, 164), results(80, 164))
    assert same.difference == 0 and same.indistinguishable and same.p_value == 1.0
    assert same.flips.lost == same.flips.gained == []


def test_paired_noise_is_called_indistinguishable_and_a_real_loss_is_not():
    # three flips each way on 164 problems: noise
    noisy = paired(results(80, 164), results(80, 164, offset=3))
    assert noisy.difference == 0 and noisy.indistinguishable and len(noisy.flips.lost) == 3
    # 30 problems lost, none gained: a real drop
    drop = paired(results(80, 164), results(50, 164))
    assert drop.difference == pytest.approx(-30 / 164) and drop.high < 0 and not drop.indistinguishable
    assert drop.p_value < 1e-6 and drop.low < drop.difference < drop.high


def test_paired_needs_the_same_problems():
    with pytest.raises(ValueError, match="same problems"):
        paired(results(1, 3), results(1, 4))


def test_flips_against_the_base_pair_problem_by_problem():
    from tasks.evaluate.humaneval.step import PROBLEM_SERIES, TASK_IDS, humaneval_flips

    ids = ["HumanEval/0", "HumanEval/1", "HumanEval/2", "HumanEval/3"]
    base = {TASK_IDS: ids, PROBLEM_SERIES: {"humaneval_pass": [1.0, 1.0, 0.0, 0.0]}}
    variant = {TASK_IDS: ids, PROBLEM_SERIES: {"humaneval_pass": [1.0, 0.0, 1.0, 1.0]}}
    flips = humaneval_flips(variant, base)
    assert (flips["humaneval_lost"], flips["humaneval_gained"]) == (1.0, 2.0)
    assert flips["humaneval_lost_ids"] == "HumanEval/1" and flips["humaneval_gained_ids"] == "HumanEval/2,HumanEval/3"
    assert flips["humaneval_diff"] == pytest.approx(0.25) and flips["humaneval_diff_low"] < 0.25 < flips["humaneval_diff_high"]
    assert flips["humaneval_mcnemar_p"] == pytest.approx(1.0)  # 1 vs 2 flips: no evidence either way
    # other problems, or none: no pairing
    assert humaneval_flips({**variant, TASK_IDS: ids[::-1]}, base) == {} and humaneval_flips({}, base) == {}
