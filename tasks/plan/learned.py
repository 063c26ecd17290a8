"""Peak memory as this host's own runs measured it, beside what the formulas predicted.

The formulas of tasks.plan.needs were fitted on a few hosts; another CPU can take more for the same step.
Seen: the 1.5B's ONNX int4 export, 13.5 GiB predicted and measured on the hosts of the fit (x0.88 to
x1.07 on an AVX2 host), took 16.5 GiB on a 2-core Xeon with AVX-512 and AMX, alone in its process (9.7
anonymous, 6.8 the mapped checkpoint): a 16 GiB host would have admitted it and been killed halfway.
So every run records each guarded step's formula prediction beside its measured peak, and a later plan
and a later run's admission (tasks.plan.ledger) scale a step's prediction by the largest measured /
predicted ratio this host has seen for that step's type (its kind where the type has none), never
below the formula: a step measured small once may not be small the next time.
"""

from __future__ import annotations

from dataclasses import replace

from tasks.plan.costs import kind_of, step_key
from tasks.plan.needs import Need


def memory_factors(records: list, hardware_id: str) -> dict[str, float]:
    """{step type or kind: the largest measured / predicted peak, at least 1} from this host's records of
    steps that did their work (a reused step measured nothing); a kind only where a type passed 1."""
    factors: dict[str, float] = {}
    for record in records:
        if record.hardware_id != hardware_id:
            continue
        for step in record.steps:
            if step.reused or not step.predicted_peak_bytes:
                continue
            ratio = max(step.peak_rss_bytes / step.predicted_peak_bytes, 1.0)
            own = step_key(step.step)  # a type measured within its formula keeps 1, not its kind's factor
            factors[own] = max(factors.get(own, 1.0), ratio)
            if ratio > 1.0:
                factors[kind_of(step.step)] = max(factors.get(kind_of(step.step), 1.0), ratio)
    return factors


def factor_for(factors: dict[str, float], step: str) -> float:
    """The step's own type's factor where this host measured that type, else its kind's, else 1."""
    own = step_key(step)
    return factors[own] if own in factors else factors.get(kind_of(step), 1.0)


def as_measured(need: Need, factor: float) -> Need:
    """`need` scaled by what this host measured (unchanged at 1), saying so."""
    if factor <= 1.0:
        return need
    said = f"x{factor:.2f}: this host's runs measured it above the formula's {need.peak_bytes / 2**30:.2f} GiB"
    return replace(need, peak_bytes=int(need.peak_bytes * factor), note="; ".join(filter(None, (need.note, said))))
