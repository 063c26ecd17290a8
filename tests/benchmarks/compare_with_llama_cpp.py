"""slmforge's measurements against llama.cpp's own tools, same files, text, settings (not a test).

    .venv/bin/python tests/benchmarks/compare_with_llama_cpp.py [GGUF ...] [--chunks 16] [--threads N]

Default files: the f16 base and its Q4_K_M and Q8_0 from the store of a run of the default
config. Quality: slmforge's quality worker vs llama-perplexity (and --kl-divergence for the
quants), n_ctx and chunks equal. Speed: slmforge's speed worker vs llama-bench (pp512, tg128),
back to back per file, same threads and repetitions. Before any number, the token streams are
checked to be the same ids: llama-perplexity tokenizes the text itself, and the token ids it
scored are read back from the header of its --kl-divergence-base file.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]  # run as a plain script from anywhere

# The private helpers too: the base run below needs its logits file kept, which run_llama_kld deletes.
from llama_tools import (  # noqa: E402
    _NUM, _grab, _ppl_args, _run, find_tools, run_llama_bench, run_llama_kld,
)

from tasks.evaluate import default_threads, run_worker  # noqa: E402

STORE = REPO / ".slmforge" / "store"
LOAD_WARNING = 1.5
# (metric, slmforge key, llama.cpp key, how compared, tolerance or None = shown, not judged)
ROWS = [
    ("perplexity", "perplexity", "ppl", "ratio", 0.01),
    ("kld_mean", "kld_mean", "kld_mean", "ratio", 0.05),
    ("kld_p99", "kld_p99", "kld_p99", "ratio", None),
    ("top1_agreement", "top1_agreement", "same_top_p", "points", 1.0),
    ("delta_p_rms", "delta_p_rms", "rms_delta_p", "points", None),
    ("prefill tok/s vs pp512", "prefill_tps", "pp_tps", "ratio", None),
    ("decode tok/s vs tg128", "decode_tps", "tg_tps", "ratio", 0.10),
]


def default_files() -> list[Path]:
    found = []
    for pattern in ("convert/*/*-F16.gguf", "quantize/*/*-Q4_K_M.gguf", "quantize/*/*-Q8_0.gguf"):
        matches = sorted(STORE.glob(pattern))
        if not matches:
            sys.exit(f"no {pattern} under {STORE}: run the pipeline on configs/default.yaml first")
        found.append(matches[0])
    return found


def warn_if_loaded(where: str) -> None:
    load = os.getloadavg()[0]
    if load > LOAD_WARNING:
        print(f"WARNING: load average {load:.2f} > {LOAD_WARNING} {where}: speed figures are noisy "
              f"(and threads on a busy core stall llama.cpp's thread barrier; try --threads 1)")


def read_logits_header_tokens(path: Path) -> tuple[int, int, list[int]]:
    """(n_ctx, n_chunk, token ids) from a llama-perplexity --kl-divergence-base file.

    Layout (perplexity.cpp): "_logits_", uint32 n_ctx, int32 n_vocab, int32 n_chunk, then
    n_chunk x n_ctx int32 token ids, then the log-probabilities.
    """
    with path.open("rb") as handle:
        if handle.read(8) != b"_logits_":
            raise ValueError(f"{path} is not a llama-perplexity logits file")
        n_ctx, _n_vocab, n_chunk = struct.unpack("<Iii", handle.read(12))
        count = n_ctx * n_chunk
        return n_ctx, n_chunk, list(struct.unpack(f"<{count}i", handle.read(4 * count)))


def llama_base_run(tools: dict, base: Path, text: Path, args, workdir: Path) -> tuple[float, list[int]]:
    """llama-perplexity on the base, saving its logits: its PPL and the token ids it scored."""
    logits = workdir / "base.kld"
    out = _run(tools["llama-perplexity"], [*_ppl_args(base, text, args.n_ctx, args.chunks, args.threads),
                                           "--kl-divergence-base", str(logits)], merge=True)
    ppl = _grab(tools["llama-perplexity"], "Final estimate: PPL = <x>", rf"Final estimate: PPL = {_NUM}", out)[0]
    _, _, tokens = read_logits_header_tokens(logits)
    logits.unlink()  # ~50 MB per chunk: not kept
    return ppl, tokens


def check_token_streams(slm_tokens: list[int], llama_tokens: list[int]) -> bool:
    """Print whether slmforge scores exactly the ids llama-perplexity scored."""
    n = len(llama_tokens)
    same = slm_tokens[:n] == llama_tokens
    if same:
        print(f"token streams: IDENTICAL - the {n} ids llama-perplexity scored equal slmforge's first "
              f"{n} (slmforge tokenized {len(slm_tokens)} tokens in all)")
    else:
        first = next((i for i, (a, b) in enumerate(zip(slm_tokens, llama_tokens)) if a != b), min(n, len(slm_tokens)))
        print(f"token streams: DIFFER at index {first} of {n} (slmforge {slm_tokens[first:first + 5]}, "
              f"llama.cpp {llama_tokens[first:first + 5]}); quality rows below are not comparable")
    return same


def slmforge_quality(path: Path, base: Path, tokens_file: Path, args) -> dict:
    return run_worker({
        "mode": "quality", "model": str(path), "base": None if path == base else str(base),
        "tokens_file": str(tokens_file), "n_ctx": args.n_ctx, "max_chunks": args.chunks,
        "threads": args.threads, "n_gpu_layers": 0,
    }, timeout_s=3600)


def speed_pair(tools: dict, path: Path, tokens: list[int], args) -> tuple[dict, dict]:
    """slmforge's speed worker, then llama-bench right after, same threads and repetitions."""
    warn_if_loaded(f"before timing {path.name}")
    ours = run_worker({
        "mode": "speed", "model": str(path), "threads": args.threads, "n_gpu_layers": 0,
        "prefill_tokens": 512, "decode_tokens": 128, "repetitions": args.reps, "depths": [],
        "ttft_prompt": tokens[:64],
    }, timeout_s=3600)
    theirs = run_llama_bench(tools["llama-bench"], path, threads=args.threads, reps=args.reps)
    return ours, vars(theirs)


def judge(how: str, tolerance: float | None, ours: float, theirs: float) -> tuple[str, str]:
    """(comparison text, PASS/FAIL/'-') for one row."""
    if how == "points":
        diff = (ours - theirs) * 100
        verdict = "-" if tolerance is None else ("PASS" if abs(diff) <= tolerance else "FAIL")
        return f"{diff:+.2f} pt", verdict
    ratio = ours / theirs if theirs else float("nan")
    verdict = "-" if tolerance is None else ("PASS" if abs(ratio - 1) <= tolerance else "FAIL")
    return f"x{ratio:.4f}", verdict


def print_table(name: str, ours: dict, theirs: dict) -> None:
    print(f"\n{name}")
    print(f"  {'metric':<24}{'slmforge':>12}{'llama.cpp':>12}{'compare':>12}  {'target':<14}verdict")
    for label, our_key, their_key, how, tol in ROWS:
        if our_key not in ours or their_key not in theirs:
            continue
        a, b = ours[our_key], theirs[their_key]
        scale = 100 if how == "points" else 1  # shares shown in percent, like llama.cpp
        text, verdict = judge(how, tol, a, b)
        target = "" if tol is None else (f"within {tol:g} pt" if how == "points" else f"within {tol:.0%}")
        print(f"  {label:<24}{a * scale:>12.6g}{b * scale:>12.6g}{text:>12}  {target:<14}{verdict}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf", nargs="*", type=Path, help="GGUF files; the first is the f16 base")
    parser.add_argument("--text", type=Path, help="evaluation text (default: the store's tokens text.txt)")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (llama-bench's default 5)")
    parser.add_argument("--tools", type=Path, default=REPO, help="where llama.cpp's tools were built")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    args.gguf = args.gguf or default_files()
    if args.text is None:
        texts = sorted(STORE.glob("tokens/*/text.txt"))
        if not texts:
            parser.error(f"no tokens/*/text.txt under {STORE}; pass --text")
        args.text = texts[0]
    return args


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when piped to a file
    args = parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    tools, base = find_tools(args.tools), args.gguf[0]
    print(f"files: {', '.join(p.name for p in args.gguf)}\ntext: {args.text}\n"
          f"n_ctx={args.n_ctx} chunks={args.chunks} threads={args.threads} reps={args.reps} "
          f"tools={tools['llama-perplexity'].parent}")
    warn_if_loaded("at start")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="slmforge-compare-") as tmp:
        workdir = Path(tmp)
        tokens = run_worker({"mode": "tokenize", "model": str(base), "text_file": str(args.text)},
                            timeout_s=600)["tokens"]
        tokens_file = workdir / "tokens.json"
        tokens_file.write_text(json.dumps({"tokens": tokens}))  # the quality worker's input format
        base_ppl, llama_tokens = llama_base_run(tools, base, args.text, args, workdir)
        same_tokens = check_token_streams(tokens, llama_tokens)
        for path in args.gguf:
            ours = slmforge_quality(path, base, tokens_file, args)
            theirs = {"ppl": base_ppl} if path == base else vars(run_llama_kld(
                tools["llama-perplexity"], base, path, args.text, n_ctx=args.n_ctx,
                chunks=args.chunks, threads=args.threads, workdir=workdir))
            speed_ours, speed_theirs = speed_pair(tools, path, tokens, args)
            results[path.name] = {"slmforge": {**ours, **speed_ours}, "llama.cpp": {**theirs, **speed_theirs}}
    for name, pair in results.items():
        print_table(name, pair["slmforge"], pair["llama.cpp"])
    warn_if_loaded("at end")
    if args.json:
        args.json.write_text(json.dumps({"same_tokens": same_tokens, "results": results}, indent=2))


if __name__ == "__main__":
    main()
