"""What can cancel this host's speed drift? Two candidate anchors, each timed beside every decode burst
(not a test; issue 19, item 5).

    .venv/bin/python tests/benchmarks/drift_anchor.py GGUF_A GGUF_B [--bursts 120] [--decode 64] [--threads N]

Per round: one read pass of the bandwidth probe's C kernel over a buffer past the last-level cache
(a memory anchor), one decode burst of A, one of B (tg: `--decode` single-token steps from an empty
cache, the speed protocol's). Prints the spread of A's raw figures, of A per memory anchor and of A per
B (a second variant as the anchor), their correlations, and block means that show slow drift.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def _blocks(values: list[float], size: int) -> str:
    return " ".join(f"{statistics.mean(values[i:i + size]):.3g}" for i in range(0, len(values), size))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--bursts", type=int, default=120)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np

    from tasks.evaluate.bandwidth import LLC_MULTIPLE, last_level_cache_bytes
    from tasks.evaluate.read_kernel import compile_read_kernel
    from tasks.formats.gguf.runtime import load

    buffer = np.ones(max(128 * 2**20, LLC_MULTIPLE * last_level_cache_bytes()) // 8, dtype=np.float64)
    lib, note = compile_read_kernel()
    if lib is None:
        sys.exit(f"the read kernel is needed for the memory anchor: {note}")
    models = [load(path, n_ctx=512, threads=args.threads) for path in (args.a, args.b)]
    rng = np.random.default_rng(0)

    def decode(model) -> float:
        return args.decode / model.time_decode(args.decode, [], rng.integers(0, model.n_vocab, args.decode).tolist())

    for model in models:
        decode(model)  # warm-up
    lib.slmforge_read_pass(buffer.ctypes.data, buffer.size, args.threads)
    memory, a, b = [], [], []
    for _ in range(args.bursts):
        memory.append(buffer.nbytes / lib.slmforge_read_pass(buffer.ctypes.data, buffer.size, args.threads) / 1e9)
        a.append(decode(models[0]))
        b.append(decode(models[1]))
    per_memory = [x / y for x, y in zip(a, memory)]
    per_b = [x / y for x, y in zip(a, b)]
    block = max(args.bursts // 6, 1)
    print(f"{args.bursts} rounds of: memory read pass, {args.decode}-token decode of A, of B ({args.threads} threads)")
    print(f"A raw             cv {_cv(a):.3f}  block means {_blocks(a, block)} tok/s")
    print(f"A / memory anchor cv {_cv(per_memory):.3f}  correlation A~memory {np.corrcoef(a, memory)[0, 1]:+.2f}")
    print(f"A / B             cv {_cv(per_b):.3f}  correlation A~B {np.corrcoef(a, b)[0, 1]:+.2f}  "
          f"block means {_blocks(per_b, block)}")


if __name__ == "__main__":
    main()
