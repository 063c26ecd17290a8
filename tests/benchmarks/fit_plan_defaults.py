"""The built-in cost lines (tasks/plan/costs.py DEFAULT_COSTS) from recorded runs: prints the table to
paste there, with each kind's fit and how far the line falls from each record.

    .venv/bin/python tests/benchmarks/fit_plan_defaults.py RECORD.json [RECORD.json ...]

Give runs of one host at sizes at least 2x apart (e.g. the default config's SmolLM2-135M run and
configs/qwen2.5-coder-1.5b.yaml's run, each `<store>/plan/runs/*.json`): where a kind is seen at one size
only, its line cannot be fitted and the current built-in line is printed unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", type=Path, nargs="+")
    args = parser.parse_args()
    from tasks.plan.costs import DEFAULT_COSTS, KINDS, CostModel, _measured_chunks, kind_of, step_key
    from tasks.plan.records import RunRecord

    records = [RunRecord.model_validate_json(path.read_text()) for path in args.records]
    hosts = {r.hardware_id for r in records}
    if len(hosts) != 1:
        sys.exit(f"the records come from {len(hosts)} hosts ({', '.join(sorted(hosts))}); give one host's runs")
    model = CostModel(records, hosts.pop())
    keys = sorted({step_key(s.step) for r in records for s in r.steps if not s.reused} | set(KINDS),
                  key=lambda k: (KINDS.index(k.split(" ")[0] if k.split(" ")[0] in KINDS
                                              else " ".join(k.split(" ")[:2])), k))
    print("DEFAULT_COSTS: dict[str, tuple[float, float]] = {")
    for key in keys:
        rate = model.rate(key)
        if rate.basis == "not modelled":
            continue
        fixed, per_unit = (rate.fixed_seconds, rate.seconds_per_unit)
        if key not in KINDS and rate is model.rate(kind_of(key)):
            continue  # priced by its kind's line
        print(f'    "{key}": ({fixed:.1f}, {per_unit:.2f}),  # {rate.basis}')
    print("}")
    print("\nthe line against each record (predicted / measured share of the host):")
    for record in records:
        print(f"  {record.model} ({record.n_weights / 1e9:.3f}B weights)")
        for step in record.steps:
            if step.reused:
                continue
            measured = step.share_s if step.share_s is not None else step.wall_s
            predicted = model.step_seconds(step.step, record.n_weights,
                                           chunks=_measured_chunks(step, record.n_weights)) \
                if kind_of(step.step) in ("measure", "serve") else model.seconds(step.step, step.units)
            ratio = f"{predicted / measured:.2f}" if measured else "-"
            print(f"    {step.step:50s} {predicted:6.0f} s / {measured:6.0f} s  {ratio}")


if __name__ == "__main__":
    main()
