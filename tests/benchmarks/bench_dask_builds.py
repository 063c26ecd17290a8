"""Dask builds benchmark (not a test): the build matrix of the default model (GGUF quantizations +
ONNX exports, at least 8 variants) on prefect-dask with 1 and with 2 worker processes, cold each
time, and Prefect's scheduling overhead per task on the same runner.

    .venv/bin/python tests/benchmarks/bench_dask_builds.py [--workers 1 2] [--noop-tasks 40]

Starts the real stack (`slmforge stack up`) in a temporary folder, since Dask workers report their
task runs to a Prefect server, and stops it at the end. Run it on a quiet host: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GGUF_TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
ONNX_PRECISIONS = ["int4", "int8"]

SNIPPET = """
import json, sys, time
from pathlib import Path
from prefect import flow, task
from tasks.acquire import AcquireConfig
from tasks.config import load_config
from tasks.formats import get_format
from tasks.formats.base import BuildInputs
from tasks.prefect_tasks import acquire_task, base_task, build_task
from tasks.remote.build_runner import BuildRunnerConfig, build_runner

config = load_config(Path(sys.argv[1])); workers = int(sys.argv[2]); noop = int(sys.argv[3])

@task
def nothing(i: int) -> int:
    return i

@flow
def bench() -> dict:
    store = config.store_dir
    model = acquire_task(config.source, config.acquire, store)
    base = base_task(model, config.model_name, config.convert, store)
    inputs = BuildInputs(hf_dir=model.hf_dir, hf_identity=model.identity, architecture=model.architecture,
                         model_name=config.model_name, base=base, store_root=store)
    jobs = [(n, q, s) for n, s in config.formats.items() for q in get_format(n).variants(s)]
    runner_config = BuildRunnerConfig(runner="dask", dask_workers=workers)
    with build_runner(runner_config) as runner:
        t0 = time.perf_counter()
        futures = [runner.submit(build_task, {"format_name": n, "quant": q, "inputs": inputs, "config": s})
                   for n, q, s in jobs]
        built = [f.result() for f in futures]
        builds_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        [f.result() for f in [runner.submit(nothing, {"i": i}) for i in range(noop)]]
        noop_s = time.perf_counter() - t0
    assert not any(b.reused for b in built), "a build was reused: the store was not cold"
    return {"variants": len(jobs), "builds_s": builds_s, "per_build_s": {f"{b.format}:{b.quant}": b.build_s
            for b in built}, "noop_tasks": noop, "noop_s": noop_s}

print("RESULT " + json.dumps(bench()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--noop-tasks", type=int, default=40)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tasks.ops.stack import StackConfig, client_env, stack_down, stack_up

    data = Path(tempfile.mkdtemp(prefix="slmforge-bench-stack-"))
    work = Path(tempfile.mkdtemp(prefix="slmforge-bench-dask-"))
    state = stack_up(StackConfig(data_dir=data))
    env = {**os.environ, "PYTHONPATH": str(REPO), **client_env(state), "PREFECT_LOGGING_LEVEL": "WARNING"}
    try:
        config = work / "matrix.yaml"
        config.write_text(json.dumps({
            "include": [str(REPO / "configs" / "default.yaml")], "name": "bench-dask",
            "formats": {"gguf": {"types": GGUF_TYPES}, "onnx": {"precisions": ONNX_PRECISIONS}},
            "store_dir": str(work / "store"),
        }))
        results = {}
        for workers in args.workers:
            for step in ("quantize", "onnx-export", "onnx-package"):  # cold builds, warm base
                shutil.rmtree(work / "store" / step, ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", SNIPPET, str(config), str(workers), str(args.noop_tasks)],
                                 cwd=REPO, env=env, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"benchmark run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            results[workers] = json.loads(line.removeprefix("RESULT "))
        _print(results)
    finally:
        stack_down(data)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _print(results: dict) -> None:
    print(f"{'dask workers':>12} {'variants':>8} {'builds wall s':>13} {'sum of build s':>14} "
          f"{'speed-up':>8} {'overhead/task ms':>16}")
    base = results[min(results)]["builds_s"]
    for workers, r in sorted(results.items()):
        total = sum(v for v in r["per_build_s"].values() if v)
        print(f"{workers:>12} {r['variants']:>8} {r['builds_s']:>13.1f} {total:>14.1f} {base / r['builds_s']:>8.2f} "
              f"{1000 * r['noop_s'] / r['noop_tasks']:>16.1f}")
    for workers, r in sorted(results.items()):
        print(f"per build, {workers} worker(s): " + ", ".join(f"{k} {v:.1f}s" if v is not None else f"{k} -"
                                                                   for k, v in r["per_build_s"].items()))


if __name__ == "__main__":
    main()
