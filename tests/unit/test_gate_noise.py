"""Gates know their noise: a check whose interval over chunks holds its limit is said to be within
noise, and `gates.noise` decides whether it passes (tasks.core.gates)."""

import pytest

from tasks.core.gates import GateConfig, judge_gates
from tasks.core.intervals import CHUNK_SERIES

pytestmark = pytest.mark.unit

BASE = {"perplexity": 10.0, CHUNK_SERIES: {"nll": [2.30] * 8}}


def _variant(kld_chunks: list[float], nll_chunks: list[float] | None = None) -> dict:
    kld = sum(kld_chunks) / len(kld_chunks)
    return {"kld_mean": kld, "perplexity": 10.0, "top1_agreement": 0.95,
            CHUNK_SERIES: {"kld": kld_chunks, "top1": [0.95] * len(kld_chunks), "nll": nll_chunks or [2.30] * 8}}


# Chunk means 0.07..0.13 (mean 0.1025): its interval over 8 chunks holds a limit of 0.1.
NOISY = [0.07, 0.13, 0.08, 0.12, 0.09, 0.13, 0.08, 0.12]


@pytest.mark.parametrize("rule, fails", [("point", True), ("strict", True), ("lenient", False)])
def test_a_figure_within_noise_of_its_limit_is_said_so_and_judged_by_the_rule(rule, fails):
    limits = GateConfig(max_kld_mean=0.1, noise=rule).for_quant("Q4_K_M")
    verdict = judge_gates(_variant(NOISY), BASE, limits, rule)
    assert len(verdict.within_noise) == 1 and verdict.within_noise[0].startswith("kld_mean 0.1025 [")
    assert f"gates.noise={rule}" in verdict.within_noise[0]
    assert bool(verdict.reasons) is fails
    if fails:
        assert verdict.reasons[0].endswith("> 0.1 within noise")


def test_strict_fails_a_point_pass_whose_interval_reaches_over_the_limit():
    just_under = [x - 0.004 for x in NOISY]  # mean 0.0985: passes on the figure
    limits = GateConfig(max_kld_mean=0.1).for_quant("Q8_0")
    assert judge_gates(_variant(just_under), BASE, limits, "point").reasons == []
    assert judge_gates(_variant(just_under), BASE, limits, "point").within_noise  # but said to be close
    assert judge_gates(_variant(just_under), BASE, limits, "strict").reasons[0].startswith("kld_mean 0.0985 [")


def test_a_clear_figure_is_not_within_noise_under_any_rule():
    clear = [0.30, 0.31, 0.29, 0.30, 0.32, 0.28, 0.30, 0.30]
    for rule in ("point", "strict", "lenient"):
        verdict = judge_gates(_variant(clear), BASE, GateConfig(max_kld_mean=0.1).for_quant("Q4_0"), rule)
        assert verdict.reasons == ["kld_mean 0.3 > 0.1"] and verdict.within_noise == []


def test_the_perplexity_ratio_interval_is_paired_with_the_base_chunks():
    # Every chunk 0.095 nats above the base's: ratio exp(0.095) = 1.0997 with no spread, clearly
    # under 1.1; an interval over unpaired chunks would be wide, this one is a point.
    nll = [2.30 + 0.095] * 8
    variant = _variant([0.01] * 8, nll) | {"perplexity": 10.0 * 2.718281828 ** 0.095}
    verdict = judge_gates(variant, BASE, GateConfig(max_ppl_ratio=1.1).for_quant("Q8_0"), "strict")
    assert verdict.reasons == [] and verdict.within_noise == []
    spread = [2.30 + d for d in (0.0, 0.19, 0.02, 0.17, 0.05, 0.14, 0.08, 0.11)]  # same mean, noisy
    noisy = judge_gates(_variant([0.01] * 8, spread) | {"perplexity": variant["perplexity"]}, BASE,
                        GateConfig(max_ppl_ratio=1.1).for_quant("Q8_0"), "strict")
    assert noisy.reasons and noisy.reasons[0].startswith("perplexity ratio 1.0997 [")


def test_without_chunk_series_the_gate_judges_the_figure_as_before():
    verdict = judge_gates({"kld_mean": 0.1025}, {"perplexity": 10.0}, GateConfig(max_kld_mean=0.1).for_quant("Q4"),
                          "strict")
    assert verdict.reasons == ["kld_mean 0.1025 > 0.1"] and verdict.within_noise == []


def test_an_unknown_noise_rule_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="point.*strict.*lenient"):
        GateConfig(noise="optimistic")
