"""Wall time of each step: seconds per unit of work, learned from this host's recorded runs.

A step's work is counted in units that its time grows with (billions of weights for the weight-bound
steps; billions of weights x chunks for the passes over text), so a rate measured on a 135M model
prices a 1.5B or a 14B. Rates come, in order, from this host's records, any host's records, or the
built-in defaults below. Pure: the records are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # records are built with step_units from here: at run time this module needs none
    from tasks.plan.records import RunRecord

# Seconds per unit on the 2-core build host (hw-… of these machines), from e1be68a's run of
# Qwen2.5-Coder-1.5B (1.78B weights) on the quick protocol, 4 chunks (DESIGN.md "Other facts"):
# acquire 2 min, convert 1, builds 7 for 3 GGUF + ONNX int4 (2 of them), reference 1 min,
# measurement 6.5 min for 5 variants, serving 3.5 min for 4 GGUF variants.
DEFAULT_SECONDS_PER_UNIT: dict[str, float] = {
    "acquire": 67.0,      # 120 s / 1.78
    "convert": 34.0,      # 60 s / 1.78
    "build gguf": 56.0,   # (420 - 120) s / 3 variants / 1.78
    "build onnx": 67.0,   # 120 s / 1.78
    "imatrix": 10.0,      # a reference-like pass over the calibration text (chunks as the reference)
    "reference pass": 8.4,  # 60 s / (1.78 x 4 chunks)
    "measure": 5.4,       # 390 s / 5 / (1.78 x (4 + 4 speed-test chunk equivalents)) -> per weight-chunk
    "serve": 30.0,        # 210 s / 4 / 1.78
}
# The speed tests (pp, tg, ttft, depths) cost about as much as this many quality chunks at n_ctx 512.
SPEED_CHUNK_EQUIVALENTS = 4


def kind_of(step: str) -> str:
    """'build gguf Q4_K_M' -> 'build gguf', 'measure x' -> 'measure': the cost model's step kinds."""
    for kind in DEFAULT_SECONDS_PER_UNIT:
        if step == kind or step.startswith(kind + " "):
            return kind
    return step


@dataclass(frozen=True)
class Rate:
    seconds_per_unit: float
    basis: str  # "this host (n steps)", "other hosts (n steps)" or "built-in default"


class CostModel:
    """Seconds per unit per step kind, from records (this host first), else defaults."""

    def __init__(self, records: list[RunRecord], hardware_id: str) -> None:
        self._rates: dict[str, Rate] = {}
        for kind in DEFAULT_SECONDS_PER_UNIT:
            here = _rate(records, kind, lambda r: r.hardware_id == hardware_id)
            anywhere = _rate(records, kind, lambda r: True)
            if here is not None:
                self._rates[kind] = Rate(here[0], f"this host ({here[1]} steps)")
            elif anywhere is not None:
                self._rates[kind] = Rate(anywhere[0], f"other hosts ({anywhere[1]} steps)")
            else:
                self._rates[kind] = Rate(DEFAULT_SECONDS_PER_UNIT[kind], "built-in default")

    def rate(self, step: str) -> Rate:
        return self._rates.get(kind_of(step), Rate(0.0, "not modelled"))

    def seconds(self, step: str, units: float) -> float:
        return self.rate(step).seconds_per_unit * units


def _rate(records: list[RunRecord], kind: str, keep) -> tuple[float, int] | None:
    """Total seconds over total units of the measured (not reused) steps of that kind: a ratio of sums,
    so a long step counts for what it weighs and one noisy small step does not swing it."""
    seconds = units = 0.0
    count = 0
    for record in records:
        if not keep(record):
            continue
        for step in record.steps:
            if kind_of(step.step) == kind and not step.reused and step.units > 0:
                seconds, units, count = seconds + step.wall_s, units + step.units, count + 1
    return (seconds / units, count) if count else None


def step_units(step: str, n_weights: int, *, chunks: int = 1) -> float:
    """The work of a step in the cost model's units."""
    billions = n_weights / 1e9
    kind = kind_of(step)
    if kind in ("reference pass", "imatrix"):
        return billions * chunks
    if kind == "measure":
        return billions * (chunks + SPEED_CHUNK_EQUIVALENTS)
    return billions
