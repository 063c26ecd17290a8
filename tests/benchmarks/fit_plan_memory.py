"""The memory plan's process overheads (tasks/plan/needs.py OVERHEAD) from recorded runs: prints the table
to paste there, then each step's predicted and measured peak with it.

    .venv/bin/python tests/benchmarks/fit_plan_memory.py CONFIG RECORD.json [CONFIG RECORD.json ...]

Each RECORD is a run's `<store>/plan/runs/*.json`, CONFIG the config it ran. A kind's overhead is what its
steps held beyond the parts the formulas model (measured peak minus the formula with no overhead), as a
line over the one model fact the kind grows with (the vocabulary, the weights, the output bytes), through
each run's mean. Give runs of one machine class at sizes at least 2x apart; a kind seen at one size keeps
that size's mean as its base, with no slope.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _peaks(config, shape, hardware_id: str) -> dict[str, tuple[str, int]]:
    """Every planned step's (strategy, predicted peak) under the current needs.OVERHEAD, by step key."""
    from tasks.plan.costs import CostModel, step_key
    from tasks.plan.limits import MemoryLimit
    from tasks.plan.plan import plan_run

    plan = plan_run(config, shape, limit=MemoryLimit(available_bytes=2**50, host_available_bytes=2**50),
                    disk_free_bytes=2**60, cost=CostModel([], hardware_id))
    return {step_key(row.step): (row.strategy, row.peak_bytes) for row in plan.rows}


def _kind_rows(config, shape, hardware_id: str) -> dict[str, dict[str, tuple[int, int]]]:
    """{kind: {step key: (the formula's peak without overhead, the kind's driver)}}: a step belongs to the
    kind whose slope moves it."""
    import tasks.plan.needs as N

    fitted = dict(N.OVERHEAD)
    try:
        N.OVERHEAD.update({kind: (0.0, 0.0) for kind in fitted})
        known = _peaks(config, shape, hardware_id)
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for kind in fitted:
            N.OVERHEAD[kind] = (0.0, 1.0)
            moved = _peaks(config, shape, hardware_id)
            N.OVERHEAD[kind] = (0.0, 0.0)
            out[kind] = {key: (known[key][1], moved[key][1] - known[key][1])
                         for key in known if moved[key][1] != known[key][1]}
        return out
    finally:
        N.OVERHEAD.update(fitted)


# A kind no recorded step shows alone takes the line of the kind most like it: with the speed anchor on
# (the default), a variant's measure peaks in its speed bursts, beside the f16, not in its quality pass,
# which, like the reference pass, holds every logits row of a chunk.
LIKE = {"quality": "reference"}


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares through (driver, residual) points, kept physical: a negative slope is taken as 0 with
    the largest residual as the base (an overhead does not shrink as a model grows), and a negative base
    as 0 with the steepest slope through the origin (so no point is under-predicted)."""
    if len({x for x, _ in points}) < 2:
        return max(r for _, r in points), 0.0
    x_mean, r_mean = mean(x for x, _ in points), mean(r for _, r in points)
    slope = sum((x - x_mean) * (r - r_mean) for x, r in points) / sum((x - x_mean) ** 2 for x, _ in points)
    if slope < 0:
        return max(r for _, r in points), 0.0
    if r_mean - slope * x_mean < 0:
        return 0.0, max(r / x for x, r in points)
    return r_mean - slope * x_mean, slope


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pairs", nargs="+", metavar="CONFIG RECORD")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        sys.exit("give CONFIG RECORD pairs")
    import tasks.plan.needs as N
    from tasks.config import load_config
    from tasks.plan.costs import step_key
    from tasks.plan.host import source_shape
    from tasks.plan.records import RunRecord

    runs = []
    for config_path, record_path in zip(args.pairs[::2], args.pairs[1::2]):
        config = load_config(Path(config_path))
        record = RunRecord.model_validate_json(Path(record_path).read_text())
        shape = source_shape(config)
        measured = {step_key(s.step): s for s in record.steps if not s.reused and s.peak_rss_bytes}
        runs.append((record, config, shape, measured, _kind_rows(config, shape, record.hardware_id)))
    if len({record.hardware_id for record, *_ in runs}) != 1:
        sys.exit("the records come from more than one host; give one host's runs")

    fits: dict[str, tuple[float, float]] = {}
    for kind in N.OVERHEAD:
        points = []
        for record, _, shape, measured, kinds in runs:
            rows = [(measured[key].peak_rss_bytes - known, driver) for key, (known, driver) in kinds[kind].items()
                    if key in measured]
            if rows:
                points.append((mean(d for _, d in rows), mean(r for r, _ in rows)))
        if points:
            fits[kind] = _line(points)
    borrowed = {kind: like for kind, like in LIKE.items() if kind not in fits and like in fits}
    fits.update({kind: fits[like] for kind, like in borrowed.items()})
    print("OVERHEAD: dict[str, tuple[float, float]] = {")
    for kind in N.OVERHEAD:
        base, slope = fits.get(kind, N.OVERHEAD[kind])
        source = f"  # like {borrowed[kind]}" if kind in borrowed else "" if kind in fits else "  # not seen: unchanged"
        print(f'    "{kind}": ({base:_.0f}, {slope:.4g}),{source}')
    print("}")

    N.OVERHEAD.update(fits)
    print("\nwith it (measured / predicted peak):")
    for record, config, shape, measured, _ in runs:
        print(f"  {record.model} ({record.n_weights / 1e9:.3f}B weights, vocabulary {shape.vocab})")
        for key, (strategy, peak) in _peaks(config, shape, record.hardware_id).items():
            if key in measured:
                got = measured[key].peak_rss_bytes
                print(f"    {key:34s} {strategy:24s} {peak / 2**30:6.2f} GiB / {got / 2**30:6.2f} GiB  "
                      f"{got / peak:.2f}")


if __name__ == "__main__":
    main()
