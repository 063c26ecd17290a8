"""Budget mixes: the choice over a sensitivity table is the exact optimum, and targets are checked."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from tasks.formats.gguf.budget import BudgetTarget, choose_mix, file_type_of, tensor_budget
from tasks.formats.gguf.config import GgufConfig

TABLE = {  # bytes and KLD cost per group and type, shaped like a measured table
    "token_embd": {"Q8_0": {"bytes": 800, "kld": 0.0}, "Q5_0": {"bytes": 550, "kld": 0.004},
                   "Q4_0": {"bytes": 450, "kld": 0.010}},
    "attn_v": {"Q8_0": {"bytes": 100, "kld": 0.0}, "Q4_0": {"bytes": 56, "kld": 0.030}},
    "ffn_down": {"Q8_0": {"bytes": 400, "kld": 0.0}, "Q6_K": {"bytes": 330, "kld": 0.001},
                 "Q4_K": {"bytes": 225, "kld": 0.006}, "Q2_K": {"bytes": 130, "kld": 0.080}},
}


def _brute_force(budget: int) -> float:
    best = float("inf")
    for combo in itertools.product(*(opts.items() for opts in TABLE.values())):
        if sum(o["bytes"] for _, o in combo) <= budget:
            best = min(best, sum(o["kld"] for _, o in combo))
    return best


@pytest.mark.parametrize("budget", [636, 700, 800, 900, 1000, 1100, 1300])
def test_choice_is_the_cheapest_mix_that_fits(budget):
    mix, used, cost = choose_mix(TABLE, budget)
    assert used <= budget and used == sum(TABLE[g][k]["bytes"] for g, k in mix.items())
    assert cost == pytest.approx(_brute_force(budget))


def test_a_budget_below_the_smallest_mix_says_so():
    with pytest.raises(ValueError, match="smallest this model allows is 636"):
        choose_mix(TABLE, 635)


def test_targets_budget_and_labels():
    table = {"overhead_bytes": 1000, "fixed_bytes": 200}
    assert tensor_budget(BudgetTarget(max_size="1MB"), table, n_weights=10) == 1_000_000 - 1000 - 200
    assert tensor_budget(BudgetTarget(bpw=4.5), table, n_weights=1000) == 562 - 200
    config = GgufConfig(targets=[{"max_size": "100MB"}, {"bpw": 4.5, "imatrix": False}, {"max_size": "95MiB"}])
    assert [t.label() for t in config.targets] == ["MIX-100MB-imat", "MIX-4.5BPW", "MIX-99614720B-imat"]
    with pytest.raises(ValidationError, match="exactly one of max_size"):
        BudgetTarget(max_size="1MB", bpw=4.0)
    assert file_type_of({"token_embd": "Q5_0", "ffn_down": "Q4_K"}, TABLE) == "Q5_0"
