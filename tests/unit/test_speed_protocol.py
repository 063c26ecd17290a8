"""The speed protocol's pairing with an anchor (tasks.evaluate.speed), on a model whose timings are set
by hand: the order of the bursts, the warm-up left out, and drift cancelled in the ratio."""

from __future__ import annotations

import math

import pytest

from tasks.evaluate.speed import measure_speed


class Host:
    """A drifting host: every burst, whoever runs it, takes `slowdown[i]` times longer than the last."""

    def __init__(self, factors):
        self.factors, self.order = list(factors), []

    def factor(self, who: str) -> float:
        self.order.append(who)
        return self.factors.pop(0)


class FakeModel:
    n_vocab, load_s = 100, 0.1

    def __init__(self, host: Host, seconds_per_token: float):
        self.host, self.spt = host, seconds_per_token

    def time_prefill(self, tokens):
        return len(tokens) * self.spt * self.host.factor("variant")

    def time_decode(self, n, context, tokens):
        return n * self.spt * self.host.factor("variant")

    def time_first_token(self, prompt):
        return self.spt * self.host.factor("variant")


class FakeAnchor:
    """Twice as slow per token as the variant, on the same drifting host."""

    def __init__(self, host: Host):
        self.host = host

    def burst(self, name: str) -> float:
        factor = self.host.factor("anchor")
        return 1 / (0.02 * factor) if name != "ttft_ms" else 0.02 * factor * 1000.0


def test_bursts_pair_in_abba_order_and_drift_cancels_in_the_ratio():
    # 3 figures x (1 warm-up + 3 repetitions) x 2 bursts; the host slows 10 % per burst.
    host = Host([1.1**i for i in range(24)])
    result = measure_speed(FakeModel(host, 0.01), prefill_tokens=8, decode_tokens=8, repetitions=3, depths=[],
                           ttft_prompt=[1, 2], anchor=FakeAnchor(host))
    assert host.order[:8] == ["variant", "anchor", "anchor", "variant"] * 2  # ABBA, warm-up included
    # Raw: the drift shows as spread. Per anchor: each pair met the host within one step of each other,
    # so the ratio is 2 x 1.1^(-+1) in alternation (A before V, then V before A): its mean stays near 2
    # whatever the trend did, while the raw figures fell by 1.1^6 across the repetitions.
    assert result["decode_tps_sd"] / result["decode_tps"] > 0.15
    ratios = [2 / 1.1, 2 * 1.1, 2 / 1.1]
    assert result["decode_tps_rel"] == pytest.approx(sum(ratios) / 3)
    mean = sum(ratios) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratios) / 2)
    assert result["decode_tps_rel_se"] == pytest.approx(sd / math.sqrt(3))
    assert set(result) >= {"prefill_tps_rel", "ttft_ms_rel", "decode_tps_anchor"}


def test_without_an_anchor_no_figure_per_anchor_is_reported():
    host = Host([1.0] * 12)
    result = measure_speed(FakeModel(host, 0.01), prefill_tokens=8, decode_tokens=8, repetitions=3, depths=[],
                           ttft_prompt=[1])
    assert host.order == ["variant"] * 12 and not [k for k in result if k.endswith(("_rel", "_anchor"))]
    assert result["decode_tps"] == pytest.approx(100.0)
