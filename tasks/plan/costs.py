"""Time of each step: a fixed cost plus seconds per unit of work, learned from this host's recorded runs.

A step's work is counted in units that its time grows with (billions of weights for the weight-bound
steps; billions of weights x chunks for the passes over text), so a rate measured on a 135M model
prices a 1.5B or a 14B. Every step also pays a cost that does not grow with the model (a process
started, torch or a runtime imported, files hashed): on a 135M model that is most of a step's time, and
a rate through the origin learned there would price a 1.5B's steps several times too high. Where the
records hold the step at sizes at least twice apart, a line is fitted (fixed seconds + seconds per
unit); otherwise the rate is the ratio of sums. The time learned is each step's share of the host
(records.py): steps run side by side split the time they share, so the plan's steps add up to the run.
Rates come, in order, from this host's records, any host's records, or the built-in defaults below.
Pure: the records are passed in.
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
    fixed_seconds: float = 0.0  # what the step costs whatever the model's size (0 unless sizes set it)


class CostModel:
    """Seconds per unit per step kind, from records (this host first), else defaults."""

    def __init__(self, records: list[RunRecord], hardware_id: str) -> None:
        self._rates: dict[str, Rate] = {}
        for kind in DEFAULT_SECONDS_PER_UNIT:
            here = _rate(records, kind, lambda r: r.hardware_id == hardware_id)
            anywhere = _rate(records, kind, lambda r: True)
            if here is not None:
                self._rates[kind] = Rate(here[1], f"this host ({here[2]} steps)", here[0])
            elif anywhere is not None:
                self._rates[kind] = Rate(anywhere[1], f"other hosts ({anywhere[2]} steps)", anywhere[0])
            else:
                self._rates[kind] = Rate(DEFAULT_SECONDS_PER_UNIT[kind], "built-in default")

    def rate(self, step: str) -> Rate:
        return self._rates.get(kind_of(step), Rate(0.0, "not modelled"))

    def seconds(self, step: str, units: float) -> float:
        rate = self.rate(step)
        return rate.fixed_seconds + rate.seconds_per_unit * units


def _rate(records: list[RunRecord], kind: str, keep) -> tuple[float, float, int] | None:
    """(fixed seconds, seconds per unit, steps) from the measured (not reused) steps of that kind."""
    points = [(step.units, step.wall_s if step.share_s is None else step.share_s)
              for record in records if keep(record)
              for step in record.steps if kind_of(step.step) == kind and not step.reused and step.units > 0]
    if not points:
        return None
    return (*fit_fixed_and_rate(points), len(points))


def fit_fixed_and_rate(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit) through (units, seconds) points. A least-squares line where the
    sizes are at least 2x apart and the line has a positive slope and no negative fixed cost; otherwise
    the ratio of sums through the origin (a long step counts for what it weighs, one noisy small step
    does not swing it)."""
    units = [u for u, _ in points]
    through_origin = (0.0, sum(s for _, s in points) / sum(units))
    if len(points) < 2 or max(units) < 2 * min(units):
        return through_origin
    mean_u, mean_s = sum(units) / len(points), sum(s for _, s in points) / len(points)
    slope = (sum((u - mean_u) * (s - mean_s) for u, s in points)
             / sum((u - mean_u) ** 2 for u in units))
    fixed = mean_s - slope * mean_u
    return (fixed, slope) if slope > 0 and fixed >= 0 else through_origin


def step_units(step: str, n_weights: int, *, chunks: int = 1) -> float:
    """The work of a step in the cost model's units."""
    billions = n_weights / 1e9
    kind = kind_of(step)
    if kind in ("reference pass", "imatrix"):
        return billions * chunks
    if kind == "measure":
        return billions * (chunks + SPEED_CHUNK_EQUIVALENTS)
    return billions
