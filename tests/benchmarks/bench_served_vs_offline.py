"""Decode tok/s of one GGUF through llama-cpp-python's server (single user, streamed, Locust) vs the
pipeline's offline `decode_tps` (the measurement worker's llama-bench-like tg run), back to back and
interleaved (offline, served, offline, served ...) so that a shared host's load drift hits both.

Usage: python tests/benchmarks/bench_served_vs_offline.py FILE.gguf [--rounds 2] [--tokens 128] [--threads 2]
       [--server-threads N]
The server decodes with the pipeline's serving default (ServeConfig.server_threads: --threads minus
one, leaving a core to Locust and the HTTP side) unless --server-threads says otherwise.
Prints each figure and the served/offline ratio (a benchmark: prints, asserts nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from tasks.evaluate.process import run_worker
from tasks.formats.gguf.llama_cpp_server import llama_cpp_command
from tasks.hosts.processes import free_port
from tasks.serve.config import LoadConfig, ServeConfig
from tasks.serve.load import run_level, single_stream_decode_tps
from tasks.serve.server import running_server

RUNTIME = "tasks.formats.gguf.runtime"


def offline_decode_tps(gguf: Path, tokens: int, threads: int, folder: Path) -> float:
    text = folder / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    ids = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(gguf), "text_file": str(text)}, timeout_s=300)
    (folder / "tokens.json").write_text(json.dumps({"tokens": ids["tokens"], "bos": ids["bos"]}))
    figures = run_worker({"mode": "speed", "runtime": RUNTIME, "model": str(gguf), "threads": threads, "n_gpu_layers": 0,
                          "tokens_file": str(folder / "tokens.json"), "prefill_tokens": 16, "decode_tokens": tokens,
                          "repetitions": 3, "depths": [], "ttft_prompt_tokens": 8}, timeout_s=900)
    return figures["decode_tps"]


def served_decode_tps(gguf: Path, tokens: int, threads: int, requests: int) -> float:
    port = free_port()
    with running_server(llama_cpp_command(gguf, port=port, n_ctx=2048, threads=threads), port=port,
                        model=gguf.stem) as server:
        config = LoadConfig(concurrency=[1], requests=requests, max_tokens=tokens,
                            prompt="Write a long story about the sea, the wind and a lighthouse keeper.")
        run_level(server.base_url, server.api_key, server.model, users=1, config=config.model_copy(update={"requests": 1}))
        level = run_level(server.base_url, server.api_key, server.model, users=1, config=config)  # after a warm-up
        return single_stream_decode_tps(level)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--server-threads", type=int, default=None)
    args = parser.parse_args()
    server_threads = ServeConfig(threads=args.server_threads).server_threads(args.threads)
    offline, served = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            offline.append(offline_decode_tps(args.gguf, args.tokens, args.threads, Path(tmp)))
            served.append(served_decode_tps(args.gguf, args.tokens, server_threads, args.requests))
            print(f"round {round_ + 1}: offline decode_tps {offline[-1]:.1f}, served decode {served[-1]:.1f} tok/s")
    ratio = statistics.mean(served) / statistics.mean(offline)
    print(f"{args.gguf.name}: offline {statistics.mean(offline):.1f} tok/s, served {statistics.mean(served):.1f} tok/s, "
          f"served/offline {ratio:.2f} ({args.rounds} interleaved rounds, offline {args.threads} threads, "
          f"server {server_threads})")


if __name__ == "__main__":
    main()
