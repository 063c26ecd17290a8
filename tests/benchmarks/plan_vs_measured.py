"""`slmforge plan`'s prediction beside a recorded run of the same config: time and peak memory per step.

    .venv/bin/python tests/benchmarks/plan_vs_measured.py CONFIG [--record FILE] [--learn-from STORE ...]

The plan is made as it was before the run: from every record in the store except the run's own (with
none left, the built-in defaults), with the memory limit the run saw when it started (its acquire
strategy). Steps the run reused from the store are shown but not compared. Time is each step's share of
the host (records.py; its wall time where the record predates shares), so the steps add up to the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _match(plan_step: str, measured: dict) -> dict | None:
    """A plan row's recorded step: the same work (costs.step_key: 'measure gguf Q4_K_M' is the run's
    'measure <model>-gguf-q4_k_m')."""
    from tasks.plan.costs import step_key

    hits = [r for name, r in measured.items() if step_key(name) == step_key(plan_step)]
    return hits[0] if len(hits) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--record", type=Path, help="The run's record (default: the newest in the store).")
    parser.add_argument("--learn-from", type=Path, action="append", default=[], metavar="STORE",
                        help="Also learn from the records of runs kept in this store (other models on this host).")
    args = parser.parse_args()
    from tasks.config import load_config
    from tasks.plan.costs import CostModel
    from tasks.plan.learned import memory_factors
    from tasks.plan.limits import MemoryLimit
    from tasks.plan.plan import plan_run
    from tasks.plan.records import RunRecord, evaluation_protocol, load_run_records, records_dir
    from tasks.plan.host import describe_probe, source_shape
    from tasks.plan.probe import host_probe

    config = load_config(args.config)
    path = args.record or sorted(records_dir(config.store_dir).glob("*.json"))[-1]
    run = RunRecord.model_validate(json.loads(path.read_text()))
    others = [r for store in [config.store_dir, *args.learn_from] for r in load_run_records(store)
              if r.recorded_at != run.recorded_at]
    print(f"learned from {len(others)} other runs: " + ", ".join(sorted({r.model.split('/')[-1] for r in others})))
    acquire = next(s for s in run.steps if s.step == "acquire")
    # The limit the run had: enough for the strategy it took and no more (the plan then picks the same one).
    limit = MemoryLimit(available_bytes=int((acquire.predicted_peak_bytes or 0) * 1.2) or 2**40,
                        host_available_bytes=2**40)
    # The host's probe as the run saw it (kept in its record), else this host's cached one.
    probe = run.probe or host_probe(run.hardware_id, measure=False)
    print(f"probe: {describe_probe(probe) if probe else 'none (built-in lines unscaled)'}")
    plan = plan_run(config, source_shape(config), limit=limit, disk_free_bytes=2**50,
                    cost=CostModel(others, run.hardware_id, probe,
                                   memory_factors=memory_factors(others, run.hardware_id),
                                   protocol=evaluation_protocol(config.evaluate)))
    measured = {s.step: s.model_dump() for s in run.steps}
    print("| step | strategy | predicted time | measured time (share; wall) | ratio | predicted peak | measured peak "
          "| ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    totals = [0.0, 0.0]
    for row in plan.rows:
        got = _match(row.step, measured)
        if got is None or got["reused"]:
            print(f"| {row.step} | {row.strategy} | {row.seconds:.0f} s | {'reused' if got else '-'} | | "
                  f"{row.peak_bytes / 2**30:.2f} GiB | | |")
            continue
        took = got["wall_s"] if got.get("share_s") is None else got["share_s"]
        totals[0] += row.seconds
        totals[1] += took
        print(f"| {row.step} | {row.strategy} | {row.seconds:.0f} s | {took:.0f} s; {got['wall_s']:.0f} s | "
              f"{took / row.seconds:.2f} | {row.peak_bytes / 2**30:.2f} GiB | "
              f"{got['peak_rss_bytes'] / 2**30:.2f} GiB | {got['peak_rss_bytes'] / row.peak_bytes:.2f} |")
    if totals[0]:
        print(f"| total (compared steps) | | {totals[0]:.0f} s | {totals[1]:.0f} s | {totals[1] / totals[0]:.2f} | | | |")


if __name__ == "__main__":
    main()
