"""Do speed verdicts survive this host's drift, and do they still catch a real slowdown? (issue 19, item 5)

    .venv/bin/python tests/benchmarks/speed_regression_proof.py [CONFIG] [--work DIR] [--keep] [--seed-store DIR]

Three real runs of CONFIG (default: configs/default.yaml) through the CLI, in a store and an MLflow
store of their own under DIR:

  A  the config as it is;
  B  the same config again, its stored measurements removed first, so every variant is measured
     anew (a second run of the same commit that does not reuse figures): the pipeline's own
     regression check compares B with A and must report no speed regression;
  C  the same variants measured at `evaluate.threads: 1` (a variant forced to fewer threads; the
     f16 anchor stays at the host's physical cores): C is another config, so the flow does not
     compare it; the same rule (tasks.review.regressions.find_regressions) is applied to B -> C
     here, on the figures both runs logged, and must catch the slowdown.

Prints, per variant, raw decode tok/s and decode per anchor of each run, the verdicts, and what the
rule would have said on raw figures with a burst's sd (the rule before the anchor). Not a test:
it takes about 20 minutes on 2 cores and its verdict is about the host as much as the code.
`--seed-store` starts DIR's store as hard links to an existing store's files (stored entries are
never written in place), so the builds are reused and only the measurements are made.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def run(config: Path) -> float:
    start = time.monotonic()
    subprocess.run([str(Path(sys.executable).parent / "slmforge"), "run", str(config)], check=True, cwd=REPO)
    return time.monotonic() - start


def children(uri: str, parent_id: str) -> dict[str, dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    rows = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {r.info.run_name: {**r.data.metrics, "eval_text": r.data.params.get("eval_text"),
                              "speed_anchor": r.data.params.get("speed_anchor")} for r in rows}


def parents(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`slmforge.regressions` != ''", order_by=["attributes.start_time ASC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def raw_rule(old: dict, new: dict) -> list[str]:
    """The rule before the anchor: raw decode_tps with the bursts' sd (2 sigma and 5 %)."""
    out = []
    for name, a in new.items():
        b = old.get(name, {})
        if {"decode_tps", "decode_tps_sd"} <= set(a) and {"decode_tps", "decode_tps_sd"} <= set(b):
            worse = b["decode_tps"] - a["decode_tps"]
            if worse > 2 * math.hypot(a["decode_tps_sd"], b["decode_tps_sd"]) and worse > 0.05 * b["decode_tps"]:
                out.append(f"{name}: decode_tps {b['decode_tps']:.1f} -> {a['decode_tps']:.1f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path, nargs="?", default=REPO / "configs" / "default.yaml")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep DIR (default: removed at the end)")
    parser.add_argument("--seed-store", type=Path, help="hard-link this store's files into DIR's store first")
    args = parser.parse_args()
    from tasks.review.regressions import RegressionConfig, find_regressions

    work = args.work or Path(tempfile.mkdtemp(prefix="slmforge-speed-proof-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    # Serving is not what is judged here (and its load test takes minutes): off, the rest as CONFIG.
    same = {"include": [str(args.config.resolve())], "store_dir": str(work / "store"),
            "tracking": {"tracking_uri": uri},
            "formats": {"gguf": {"serve": {"enabled": False}}, "onnx": {"serve": {"enabled": False}}}}
    (work / "same.yaml").write_text(yaml.safe_dump(same))
    if args.seed_store and not (work / "store").exists():
        subprocess.run(["cp", "-al", str(args.seed_store.resolve()), str(work / "store")], check=True)
    (work / "slow.yaml").write_text(yaml.safe_dump({**same, "evaluate": {"threads": 1}}))
    seconds = {"A": run(work / "same.yaml")}
    shutil.rmtree(work / "store" / "evaluate")  # measure B anew: same config, same artefacts, fresh figures
    seconds["B"] = run(work / "same.yaml")
    seconds["C"] = run(work / "slow.yaml")
    a_run, b_run, c_run = parents(uri)[-3:]
    figures = {label: children(uri, r.info.run_id) for label, r in zip("ABC", (a_run, b_run, c_run))}

    print(f"\nruns: A {seconds['A']:.0f} s, B {seconds['B']:.0f} s, C {seconds['C']:.0f} s (store {work})")
    print(f"{'variant':42} {'A tok/s':>8} {'B tok/s':>8} {'C tok/s':>8} {'A rel':>7} {'B rel':>7} {'C rel':>7}")
    for name in sorted(figures["B"]):
        row = [figures[label].get(name, {}) for label in "ABC"]
        raw = " ".join(f"{r.get('decode_tps', float('nan')):8.1f}" for r in row)
        rel = " ".join(f"{r.get('decode_tps_rel', float('nan')):7.3f}" for r in row)
        print(f"{name:42} {raw} {rel}")
    b_tags = b_run.data.tags
    print(f"\nB vs A, the flow's own check: {b_tags.get('slmforge.regressions')} regression(s) "
          f"{b_tags.get('slmforge.regression_list')!r}")
    print(f"B vs A, the old raw rule would have said: {raw_rule(figures['B'], figures['A']) or 'nothing'}")
    changes, _ = find_regressions(figures["B"], figures["C"], RegressionConfig())
    speed = [c.describe() for c in changes if c.kind == "speed"]
    print(f"C (threads 1) vs B, the same rule: {len(speed)} speed regression(s)")
    for line in speed:
        print(f"  - {line}")
    measured = [n for n, m in figures["C"].items() if "decode_tps_rel" in m]
    caught = {c.variant for c in changes if c.figure == "decode_tps_rel"}
    ok = b_tags.get("slmforge.regressions") == "0" and set(measured) <= caught
    print("\nVERDICT:", "drift raised nothing and the slowdown was caught on every anchored variant" if ok else
          f"NOT AS EXPECTED (anchored variants {sorted(measured)}, decode slowdowns caught {sorted(caught)})")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
