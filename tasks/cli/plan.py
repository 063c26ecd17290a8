"""`slmforge plan CONFIG` and the check `slmforge run` makes before starting: display only (tasks.plan computes)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tasks.plan.limits import gib
from tasks.plan.plan import Plan


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(plan: Plan, title: str) -> Table:
    table = Table(title=title)
    for column in ("step", "strategy", "time", "peak memory", "disk", "fits", "note"):
        table.add_column(column, justify="right" if column in ("time", "peak memory", "disk") else "left")
    for row in plan.rows:
        table.add_row(row.step, row.strategy, _duration(row.seconds), gib(row.peak_bytes), gib(row.disk_bytes),
                      "yes" if row.fits else "NO", row.note)
    table.add_row("total", "", _duration(plan.total_seconds), gib(plan.peak_bytes), gib(plan.disk_bytes),
                  "yes" if not plan.problems() else "NO", plan.peak_note())
    return table


def print_plan(console: Console, plan: Plan, medium: list[Plan], *, rate_basis: dict[str, str]) -> None:
    m = plan.model
    console.print(f"model {m.name}: {m.n_weights / 1e9:.2f}B weights, {m.n_layers} layers, hidden {m.hidden}, "
                  f"vocabulary {m.vocab}" + (f", source {m.source_bits_per_weight:.2f} bits/weight (quantized)"
                                             if m.source_quantized else ""), markup=False)
    console.print(f"this process may use {plan.limit.describe()}; the store's disk has {gib(plan.disk_free_bytes)} "
                  "free", markup=False)
    console.print(plan_table(plan, "plan on this host"))
    console.print("time: each step's share of this host (steps that run side by side split the time they share), "
                  "so the steps add up to the run", markup=False)
    console.print("time per step from: " + "; ".join(f"{k} {v}" for k, v in rate_basis.items()), markup=False)
    _problems(console, plan, "this run")
    for other in medium:
        console.print(plan_table(other, f"the same config on {other.model.name} "
                                        f"({other.model.n_weights / 1e9:.1f}B weights)"))
        _problems(console, other, other.model.name)


def _problems(console: Console, plan: Plan, what: str) -> None:
    problems = plan.problems()
    if not problems:
        console.print(f"{what}: every step fits this host", style="green", markup=False)
        return
    console.print(f"{what}: would not fit this host:", style="red", markup=False)
    for line in problems:
        console.print(f"  - {line}", markup=False)


def run_plan_command(console: Console, config_path: Path, *, probe_again: bool = False) -> int:
    """Print the plan; exit status 0 when this config fits this host, 2 when it does not."""
    # loaded by the command that runs: --help stays fast
    from tasks.config import load_config
    from tasks.hosts.hardware import hardware_facts
    from tasks.plan.costs import KINDS
    from tasks.plan.host import host_cost_model, host_plans

    config = load_config(config_path)
    hardware_id = hardware_facts()["hardware_id"]
    cost, probe_note = host_cost_model(config, hardware_id, measure_probe=True, probe_again=probe_again)
    plan, medium = host_plans(config, hardware_id=hardware_id, cost=cost)
    basis = {kind: f"{rate.basis}, {rate.fixed_seconds:.0f} s + {rate.seconds_per_unit:.1f} s per unit"
             for kind in KINDS for rate in [cost.rate(kind)]}
    print_plan(console, plan, medium, rate_basis=basis)
    console.print(probe_note, markup=False)
    return 2 if plan.problems() else 0


def refuse_unfit(console: Console, config) -> None:
    """`slmforge run`'s check before any work: a step that fits no strategy stops the run here."""
    from tasks.core.errors import SourceError  # loaded by the command that runs: --help stays fast
    from tasks.plan.host import host_plans

    try:
        plan, _ = host_plans(config)
    except (SourceError, ValueError, OSError, KeyError, IndexError) as exc:
        # A source whose shape is not known before download, or a file acquire will reject with its own
        # precise error: each step still checks its own memory before it starts.
        console.print(f"memory plan skipped before the run: {type(exc).__name__}: {exc}", markup=False)
        return
    if problems := plan.problems():
        console.print(f"Not started: this run would not fit this host ({plan.limit.describe()}):", style="red",
                      markup=False)
        for line in problems:
            console.print(f"  - {line}", markup=False)
        console.print("See `slmforge plan CONFIG` for every step; run on a host with more memory or disk, or "
                      "switch the steps that do not fit off in the config.", markup=False)
        raise typer.Exit(2)
