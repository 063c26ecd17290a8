"""Mixes for a budget: the per-tensor-group types with the least measured KLD that fit a size.

`formats.gguf.targets: [{max_size: 100MB}, {bpw: 4.5}]`: each target becomes one variant (label
MIX-100MB-imat, MIX-4.5BPW-imat), built with llama-quantize overrides chosen from the stored
sensitivity table (tasks.formats.gguf.sensitivity), then evaluated, gated and packaged like any other.
The choice is exact over the table (a Pareto frontier of bytes vs summed KLD cost, group by group);
the built file is checked against the budget and, if header bytes differ from the estimate, chosen
again with the excess taken off (the budget is met to the byte).
"""

from __future__ import annotations

from pydantic import BaseModel, ByteSize, ConfigDict, Field, model_validator

from tasks.core.naming import mix_label

# ggml type of the largest group -> the llama.cpp file type written as general.file_type.
FILE_TYPE = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K": "Q5_K_S", "Q4_K": "Q4_K_S", "Q3_K": "Q3_K_S", "Q2_K": "Q2_K",
             "IQ4_XS": "IQ4_XS", "IQ4_NL": "IQ4_NL", "Q5_1": "Q5_1", "Q5_0": "Q5_0", "Q4_1": "Q4_1", "Q4_0": "Q4_0"}


class BudgetTarget(BaseModel):
    """One size budget: a file size or a bits-per-weight figure (as the bits_per_weight metric)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_size: ByteSize | None = Field(None, description="Largest file size, e.g. 100MB (10^6) or 95MiB (2^20).")
    bpw: float | None = Field(None, gt=1, le=16, description="Largest bits per weight (tensor bytes x 8 / weights).")
    imatrix: bool = Field(True, description="Quantize the mix (and measure its sensitivity) with the imatrix.")

    @model_validator(mode="after")
    def _one(self) -> BudgetTarget:
        if (self.max_size is None) == (self.bpw is None):
            raise ValueError("a budget target sets exactly one of max_size (e.g. 100MB) or bpw (e.g. 4.5)")
        return self

    def label(self) -> str:
        return mix_label(max_size=self.max_size, bpw=self.bpw, imatrix=self.imatrix)


def choose_mix(groups: dict[str, dict], budget: int) -> tuple[dict[str, str], int, float]:
    """(group -> type, tensor bytes, summed KLD cost) with the least cost whose bytes <= budget.

    Exact: after each group only the Pareto-optimal (bytes, cost) partial mixes are kept.
    """
    frontier: list[tuple[int, float, dict]] = [(0, 0.0, {})]
    for group, options in groups.items():
        grown = sorted((b + o["bytes"], c + max(o["kld"], 0.0), {**mix, group: kind})
                       for b, c, mix in frontier for kind, o in options.items() if b + o["bytes"] <= budget)
        frontier, best = [], float("inf")
        for item in grown:  # ascending bytes: keep an entry only if it costs less than every smaller one
            if item[1] < best:
                frontier.append(item)
                best = item[1]
        if not frontier:
            smallest = sum(min(o["bytes"] for o in opts.values()) for opts in groups.values())
            raise ValueError(f"no mix fits {budget} tensor bytes; the smallest this model allows is {smallest}")
    bytes_, cost, mix = min(frontier, key=lambda item: item[1])
    return mix, bytes_, cost


def tensor_budget(target: BudgetTarget, table: dict, n_weights: int, excess: int = 0) -> int:
    """Bytes the grouped tensors may take: the target less fixed tensors (and the file's header bytes)."""
    if target.bpw is not None:
        total = int(target.bpw * n_weights / 8)
    else:
        total = int(target.max_size) - table["overhead_bytes"] - excess
    return total - table["fixed_bytes"]


def file_type_of(mix: dict[str, str], groups: dict[str, dict]) -> str:
    """The file type llama.cpp's loader reports: that of the group holding the most bytes."""
    largest = max(mix, key=lambda g: groups[g][mix[g]]["bytes"])
    return FILE_TYPE[mix[largest]]
