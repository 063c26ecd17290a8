"""Evaluation worker: `python -m tasks.evaluate.worker REQUEST.json RESULT.json`.

Runs in a fresh process per measurement so that peak memory is the model's own and a crash in
native code fails one variant, not the flow. The result file is written atomically at the end.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from tasks.evaluate import llama_runner


def run_request(request: dict) -> dict:
    model = Path(request["model"])
    threads = request.get("threads", 1)
    n_gpu_layers = request.get("n_gpu_layers", 0)
    if request["mode"] == "tokenize":
        from llama_cpp import Llama

        vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
        return {"tokens": llama_runner.tokenize_text(vocab, Path(request["text_file"]).read_text(encoding="utf-8"))}
    if request["mode"] == "quality":
        tokens = json.loads(Path(request["tokens_file"]).read_text())["tokens"]
        base = Path(request["base"]) if request.get("base") else None
        return llama_runner.measure_quality(
            model, base, tokens, n_ctx=request["n_ctx"], max_chunks=request.get("max_chunks"),
            threads=threads, n_gpu_layers=n_gpu_layers,
        )
    if request["mode"] == "speed":
        result = llama_runner.measure_speed(
            model, threads=threads, n_gpu_layers=n_gpu_layers,
            prefill_tokens=request["prefill_tokens"], decode_tokens=request["decode_tokens"],
            repetitions=request["repetitions"], depths=request.get("depths", []),
            ttft_prompt=request["ttft_prompt"],
        )
        result["peak_rss_bytes"] = peak_rss_bytes()
        return result
    if request["mode"] == "prompts":  # greedy answers to a prompt suite, see prompt_suite.py
        from tasks.evaluate.prompt_suite import run_prompts_request

        return run_prompts_request(model, request, threads=threads, n_gpu_layers=n_gpu_layers)
    raise ValueError(f"unknown mode {request['mode']!r}")


def peak_rss_bytes() -> int:
    """High-water resident memory of this process's own address space.

    Not ru_maxrss: Linux carries it over fork+exec, so a worker started by a 900 MB flow process
    would report at least 900 MB. VmHWM belongs to the address space exec created.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # other OSes: best available


def serve(handler, request_path: Path, result_path: Path) -> None:
    """Answer one request file with `handler`; the result file appears only when complete."""
    result = handler(json.loads(request_path.read_text()))
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)


if __name__ == "__main__":
    serve(run_request, Path(sys.argv[1]), Path(sys.argv[2]))
