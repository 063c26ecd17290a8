"""Pipeline benchmark (not a test): cold run, warm re-run, per-step times, peak RSS, and the
flow's overhead against the same step cores called by hand one after another.

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--config configs/default.yaml] [--gguf-only]

Each measurement runs in its own process with a fresh store and MLflow database, so "cold"
really starts from nothing (the pip-installed packages and the OS page cache aside).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FLOW_SNIPPET = """
import json, sys, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from flows.pipeline import pipeline
t0 = time.perf_counter()
summary = pipeline(sys.argv[1])
wall = time.perf_counter() - t0
with get_client(sync_client=True) as client:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])))
steps = {}
for run in runs:
    steps[run.name] = run.total_run_time.total_seconds()
print("RESULT " + json.dumps({"wall": wall, "steps": steps, "reused": summary["reused"]}))
"""

BY_HAND_SNIPPET = """
import json, sys, time
from pathlib import Path
from tasks.acquire import acquire_model
from tasks.config import load_config
from tasks.evaluate import default_threads
from tasks.evaluate.measure import compute_reference, measure_variant, prepare_tokens
from tasks.formats import get_format
from tasks.formats.base import BaseArtifact, Built, BuildInputs, PackageInputs
from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.convert import convert_to_gguf
from tasks.formats.gguf.facts import gguf_size_facts
from tasks.formats.gguf.package import package_gguf_variant
from tasks.formats.gguf.quantize import quantize_gguf
from tasks.hosts.hardware import hardware_facts
config = load_config(Path(sys.argv[1])); store = config.store_dir; steps = {}
def timed(name, fn):
    t = time.perf_counter(); out = fn(); steps[name] = time.perf_counter() - t; return out
t0 = time.perf_counter()
hw = hardware_facts()["hardware_id"]
model = timed("acquire", lambda: acquire_model(config.source, config.acquire, store_root=store))
converted = timed("convert", lambda: convert_to_gguf(model.hf_dir, architecture=model.architecture,
                  identity=model.identity, model_name=config.model_name, config=config.convert, store_root=store))
base = BaseArtifact(path=converted.gguf_path, key=converted.key, quant=converted.outtype.upper(), reused=converted.reused,
                    n_weights=int(gguf_size_facts(converted.gguf_path)["n_weights"]))
gguf = config.formats.get("gguf") or GgufConfig(types=[])
builds = [Built(format="gguf", quant=base.quant, path=base.path, key=base.key, reused=base.reused)]
for q in gguf.types:
    done = timed(f"quantize-{q}", lambda: quantize_gguf(base.path, q, base_key=base.key, model_name=config.model_name,
                 threads=gguf.threads, store_root=store))
    builds.append(Built(format="gguf", quant=q, path=done.gguf_path, key=done.key, reused=done.reused))
inputs = BuildInputs(hf_dir=model.hf_dir, hf_identity=model.identity, architecture=model.architecture,
                     model_name=config.model_name, base=base, store_root=store)
for name, section in config.formats.items():  # other formats through their own interface
    if name != "gguf":
        builds += [timed(f"build-{name}-{q}", lambda: get_format(name).build(q, inputs, section))
                   for q in get_format(name).variants(section)]
tokens = timed("tokenize", lambda: prepare_tokens(base, config.evaluate, store_root=store))
reference = timed("reference", lambda: compute_reference(base, tokens, config.evaluate, store_root=store))
threads = config.evaluate.threads or default_threads()
for b in builds:
    metrics, _ = timed(f"evaluate-{b.format}-{b.quant}", lambda: measure_variant(b, base=base, reference=reference,
                       tokens_file=tokens, config=config.evaluate, hardware_id=hw, store_root=store, is_base=b.key == base.key))
    if b.format == "gguf":
        timed(f"package-gguf-{b.quant}", lambda: package_gguf_variant(b.path, hf_dir=model.hf_dir,
              model_name=config.model_name, quant=b.quant, variant_key=b.key, metrics=metrics, provenance={},
              config=gguf.package, store_root=store))
    else:
        timed(f"package-{b.format}-{b.quant}", lambda: get_format(b.format).package(b, PackageInputs(
              hf_dir=model.hf_dir, model_name=config.model_name, metrics=metrics, provenance={}, store_root=store,
              threads=threads), config.formats[b.format]))
print("RESULT " + json.dumps({"wall": time.perf_counter() - t0, "steps": steps}))
"""


def run_measured(snippet: str, config: Path, env: dict) -> dict:
    """Run a snippet in a fresh process; its RESULT line plus wall time and peak RSS of the tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", snippet, str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"benchmark run failed:\n{done.stderr[-3000:]}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["process_wall"] = wall
    result["peak_rss_mib"] = max(peak, before) / 1024  # largest single process in the tree so far
    return result


def write_config(tmp: Path, base_config: Path, name: str, gguf_only: bool) -> Path:
    data = {"include": [str(base_config.resolve())], "store_dir": str(tmp / name / "store"),
            "tracking": {"tracking_uri": f"sqlite:///{tmp / name / 'mlflow.db'}"}}
    if gguf_only:  # keep the included GGUF section, switch every other format off
        from tasks.config import load_config

        data["formats"] = {name: None for name in load_config(base_config).formats if name != "gguf"}
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    parser.add_argument("--gguf-only", action="store_true", help="Compare like with like: GGUF steps only.")
    args = parser.parse_args()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    print(f"load average before: {os.getloadavg()[0]:.2f} (figures are noisy above ~1 on 2 cores)")
    with tempfile.TemporaryDirectory(prefix="slmforge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        flow_config = write_config(tmp, args.config, "flow", args.gguf_only)
        cold = run_measured(FLOW_SNIPPET, flow_config, env)
        warm = run_measured(FLOW_SNIPPET, flow_config, env)
        by_hand = run_measured(BY_HAND_SNIPPET, write_config(tmp, args.config, "hand", args.gguf_only), env)
    print(f"cold flow run:   {cold['process_wall']:8.1f} s (flow body {cold['wall']:.1f} s)")
    print(f"warm re-run:     {warm['process_wall']:8.1f} s (flow body {warm['wall']:.1f} s) = "
          f"{100 * warm['process_wall'] / cold['process_wall']:.1f} % of cold (target <= 10 %)")
    print(f"steps by hand:   {by_hand['process_wall']:8.1f} s; flow / by hand = "
          f"{cold['process_wall'] / by_hand['process_wall']:.3f} (target <= 1.2)")
    print(f"peak RSS of any process in the runs: {cold['peak_rss_mib']:.0f} MiB")
    print(f"all variants reused on warm run: {all(warm['reused'].values())}")
    print("\nper-step seconds (cold flow | by hand):")
    for name, seconds in sorted(cold["steps"].items()):
        print(f"  {name:55s} {seconds:8.2f}")
    for name, seconds in by_hand["steps"].items():
        print(f"  by hand {name:47s} {seconds:8.2f}")


if __name__ == "__main__":
    main()
