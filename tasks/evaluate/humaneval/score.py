"""HumanEval figures of a variant (greedy, one sample per problem) and of a pair of variants.

pass@1 with one greedy sample is the share of problems passed; its 95 % interval is Wilson's (exact
enough for 164 problems and well behaved near 0 and 1, unlike the normal one). Two variants on the same
problems are compared pairwise: only the problems they disagree on (the flips) carry information, so
the test is the exact McNemar test on the flips (a two-sided binomial test with p = 1/2) and the
difference's interval is Newcombe's for paired proportions (method 10, built from Wilson intervals).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

Z95 = 1.959963984540054


class PassAtOne(BaseModel):
    passed: int
    total: int
    pass_at_1: float
    low: float = Field(description="Wilson 95 % interval, lower end.")
    high: float
    passed_ids: list[str]


class Flips(BaseModel):
    lost: list[str] = Field(description="Passed by the reference, failed by the variant.")
    gained: list[str] = Field(description="Failed by the reference, passed by the variant.")


class Paired(BaseModel):
    difference: float = Field(description="Variant's pass@1 minus the reference's.")
    low: float = Field(description="Newcombe's paired 95 % interval, lower end.")
    high: float
    p_value: float = Field(description="Exact McNemar test on the flips, two-sided.")
    flips: Flips
    indistinguishable: bool = Field(description="The interval holds 0: the data cannot rank the two.")


def wilson(passed: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if total <= 0:
        raise ValueError(f"a pass rate needs at least one problem, got total={total}")
    p, z2 = passed / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_1(results: dict[str, bool]) -> PassAtOne:
    """{task_id: passed} of one variant -> pass@1, its interval, the ids passed."""
    passed = sorted(t for t, ok in results.items() if ok)
    low, high = wilson(len(passed), len(results))
    return PassAtOne(passed=len(passed), total=len(results), pass_at_1=len(passed) / len(results), low=low,
                     high=high, passed_ids=passed)


def flips(reference_passed: set[str] | list[str], variant_passed: set[str] | list[str]) -> Flips:
    """Problems the variant fails that the reference passes (lost), and the reverse (gained)."""
    ref, var = set(reference_passed), set(variant_passed)
    return Flips(lost=sorted(ref - var), gained=sorted(var - ref))


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: the flips as a binomial(lost + gained, 1/2)."""
    n = lost + gained
    if n == 0:
        return 1.0
    k = min(lost, gained)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(reference: dict[str, bool], variant: dict[str, bool]) -> Paired:
    """The variant against the reference on the same problems (both must have run the same set)."""
    if set(reference) != set(variant):
        only = sorted(set(reference) ^ set(variant))[:5]
        raise ValueError(f"paired comparison needs the same problems in both; they differ on {only}...")
    n = len(reference)
    both = sum(reference[t] and variant[t] for t in reference)
    f = flips([t for t, ok in reference.items() if ok], [t for t, ok in variant.items() if ok])
    b, c = len(f.lost), len(f.gained)
    low, high = _newcombe(both, b, c, n - both - b - c)
    return Paired(difference=(c - b) / n, low=low, high=high, p_value=mcnemar_exact(b, c), flips=f,
                  indistinguishable=low <= 0.0 <= high)


def _newcombe(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval of p_variant - p_reference, paired: a both pass, b only the
    reference, c only the variant, d neither."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n  # reference, variant
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    diff = p2 - p1
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0 if denominator == 0 else (a * d - b * c) / math.sqrt(denominator)
    lower = diff - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    upper = diff + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, lower), min(1.0, upper)
