"""slmforge's measurements against llama.cpp's own tools, same files, text, settings (not a test).

    .venv/bin/python tests/benchmarks/compare_with_llama_cpp.py [GGUF ...] [--chunks 16] [--threads N]

Default files: the f16 base and its five default quants from the store of a run of the default
config. The same work both ways, each timed: slmforge computes its stored f16 reference once
(reference worker), then scores each quant against it (quality worker); llama-perplexity writes
its --kl-divergence-base file once, then runs --kl-divergence per quant. Speed: slmforge's speed
worker vs llama-bench (pp512, tg128), same threads and repetitions, in --rounds rounds that
alternate which side goes first (ABBA...): these hosts drift by more than 10 % within minutes, so
one burst each compares two moments rather than two programs. Each round puts the two sides back to
back, so its ratio is the comparison with the drift left out; the verdict is on the median of the
rounds' ratios (each side's own median is printed beside it, without a verdict: two medians can come
from rounds minutes apart), and every round's ratio is printed. The
total wall time of each side is printed with their ratio. Before any number, the token streams
are checked to be the same ids: llama-perplexity tokenizes the text itself, and the token ids it
scored are read back from the header of its --kl-divergence-base file.

`--domain code` checks an evaluation domain of configs/eval/default.yaml the same way: slmforge
scores it as a domain (beside one chunk of the main text, in the same reference pass, its chunks
numbered after the main text's), llama-perplexity scores the domain's text as its only text. A chat
domain is refused: llama-perplexity cannot render conversations through a chat template.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]  # run as a plain script from anywhere

# The private helpers too: the base run below needs its logits file kept, which run_llama_kld deletes.
from llama_tools import _NUM, _grab, _ppl_args, _run, find_tools, run_llama_bench  # noqa: E402

from tasks.evaluate import default_threads  # noqa: E402
from tasks.evaluate.process import run_worker  # noqa: E402
from tasks.formats.gguf.llama_tools import tools_dir  # noqa: E402

RUNTIME = "tasks.formats.gguf.runtime"

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
    ("decode tok/s vs tg128", "decode_tps", "tg_tps", "ratio", None),
    ("prefill, round ratios", "prefill_paired", "paired", "ratio", 0.05),  # median of back-to-back ratios
    ("decode, round ratios", "decode_paired", "paired", "ratio", 0.05),
]


def default_files() -> list[Path]:
    found = []
    patterns = ["convert/*/*-F16.gguf"] + [f"quantize/*/*-{q}.gguf" for q in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")]
    for pattern in patterns:
        matches = sorted(STORE.glob(pattern))
        if not matches:
            sys.exit(f"no {pattern} under {STORE}: run the pipeline on configs/sweep.yaml first")
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


def llama_base_run(tools: dict, base: Path, text: Path, args, logits: Path) -> tuple[float, list[int]]:
    """llama-perplexity on the base, saving its logits for every quant: its PPL and the ids it scored."""
    out = _run(tools["llama-perplexity"], [*_ppl_args(base, text, args.n_ctx, args.chunks, args.threads),
                                           "--kl-divergence-base", str(logits)], merge=True)
    ppl = _grab(tools["llama-perplexity"], "Final estimate: PPL = <x>", rf"Final estimate: PPL = {_NUM}", out)[0]
    _, _, tokens = read_logits_header_tokens(logits)
    return ppl, tokens


def llama_kld(tools: dict, path: Path, text: Path, args, logits: Path) -> dict:
    """llama-perplexity --kl-divergence of one quant against the saved base logits."""
    binary = tools["llama-perplexity"]
    out = _run(binary, [*_ppl_args(path, text, args.n_ctx, args.chunks, args.threads),
                        "--kl-divergence-base", str(logits), "--kl-divergence"], merge=True)
    return {
        "ppl": _grab(binary, "Mean PPL(Q)  : <x>", rf"Mean PPL\(Q\)\s*:\s*{_NUM}", out)[0],
        "kld_mean": _grab(binary, "Mean    KLD: <x>", rf"Mean\s+KLD:\s*{_NUM}", out)[0],
        "kld_p99": _grab(binary, "99.0%   KLD: <x>", rf"99\.0%\s+KLD:\s*{_NUM}", out)[0],
        "same_top_p": _grab(binary, "Same top p: <x> %", rf"Same top p:\s*{_NUM}", out)[0] / 100.0,
        "rms_delta_p": _grab(binary, "RMS Δp    : <x> %", rf"RMS Δp\s*:\s*{_NUM}", out)[0] / 100.0,
    }


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


def slmforge_reference(base: Path, tokens_file: Path, args, out_dir: Path) -> dict:
    # With a domain: one chunk of the main text first, so the domain's chunks are numbered after it
    # as in a run, and `--chunks` of the domain.
    chunks = {"max_chunks": 1, "domain_chunks": {args.domain: args.chunks}} if args.domain else {
        "max_chunks": args.chunks}
    return run_worker({"mode": "reference", "runtime": RUNTIME, "model": str(base), "tokens_file": str(tokens_file),
                       "n_ctx": args.n_ctx, **chunks, "out_dir": str(out_dir),
                       "threads": args.threads, "n_gpu_layers": 0}, timeout_s=3600)


def domain_material(name: str) -> dict:
    """A text domain of the default protocol, loaded (and checked against its pin) as a run loads it."""
    from tasks.config import load_config
    from tasks.evaluate.domains import load_domain

    domains = load_config(REPO / "configs" / "default.yaml").evaluate.domains or {}
    if name not in domains:
        sys.exit(f"--domain {name}: configs/eval/default.yaml has the domains {sorted(domains)}")
    if domains[name].render != "text":
        sys.exit(f"--domain {name}: a chat domain is rendered through a chat template, which llama-perplexity "
                 "cannot do; compare a text domain")
    return load_domain(name, domains[name])


def domain_view(figures: dict, domain: str | None) -> dict:
    """The domain's own figures under the main text's names (`code/kld_mean` -> `kld_mean`)."""
    if not domain:
        return figures
    prefix = f"{domain}/"
    return {**figures, **{k[len(prefix):]: v for k, v in figures.items() if k.startswith(prefix)}}


def slmforge_quality(path: Path, tokens_file: Path, args, reference_dir: Path) -> dict:
    return run_worker({"mode": "quality", "runtime": RUNTIME, "model": str(path), "tokens_file": str(tokens_file),
                       "reference_dir": str(reference_dir), "n_ctx": args.n_ctx, "threads": args.threads,
                       "n_gpu_layers": 0}, timeout_s=3600)


def slmforge_speed(path: Path, tokens_file: Path, args) -> dict:
    return run_worker({"mode": "speed", "runtime": RUNTIME, "model": str(path), "tokens_file": str(tokens_file),
                       "threads": args.threads, "n_gpu_layers": 0, "prefill_tokens": 512, "decode_tokens": 128,
                       "repetitions": args.reps, "depths": [], "ttft_prompt_tokens": 64, "prompts_file": None},
                      timeout_s=3600)


def speed_rounds(path: Path, tokens_file: Path, tools: dict, args, clock) -> tuple[dict, dict]:
    """Each side's median over `args.rounds` alternating rounds, every round's ratios (`rounds`) and
    their medians (`<kind>_paired`, against 1.0: the back-to-back comparison)."""
    ours, theirs = [], []
    for index in range(args.rounds):
        sides = [("slmforge", lambda: ours.append(slmforge_speed(path, tokens_file, args))),
                 ("llama.cpp", lambda: theirs.append(vars(run_llama_bench(
                     tools["llama-bench"], path, threads=args.threads, reps=args.reps))))]
        for side, run in sides if index % 2 == 0 else reversed(sides):
            clock.time(side, run)

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    rounds = [{"prefill": a["prefill_tps"] / b["pp_tps"], "decode": a["decode_tps"] / b["tg_tps"]}
              for a, b in zip(ours, theirs)]
    return ({"prefill_tps": median(ours, "prefill_tps"), "decode_tps": median(ours, "decode_tps"), "rounds": rounds,
             "prefill_paired": median(rounds, "prefill"), "decode_paired": median(rounds, "decode")},
            {"pp_tps": median(theirs, "pp_tps"), "tg_tps": median(theirs, "tg_tps"), "paired": 1.0})


class Clock:
    """Wall time spent per side, summed over the calls it timed."""

    def __init__(self) -> None:
        self.spent = {"slmforge": 0.0, "llama.cpp": 0.0}

    def time(self, side: str, call, *args, **kwargs):
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.spent[side] += time.perf_counter() - started


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
    if rounds := ours.get("rounds"):
        for kind in ("prefill", "decode"):
            print(f"  {kind + ' ratio per round':<24}" + " ".join(f"x{r[kind]:.3f}" for r in rounds))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf", nargs="*", type=Path, help="GGUF files; the first is the f16 base")
    parser.add_argument("--text", type=Path, help="evaluation text (default: the store's tokens text.txt)")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (the issue's r=3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="speed rounds per file, alternating which side goes first; medians compared")
    parser.add_argument("--tools", type=Path, default=tools_dir(),
                        help="where llama.cpp's tools were built (default: the binding's own build, `make peers`)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--domain", help="compare this text domain of configs/eval/default.yaml (e.g. code) "
                                         "instead of the main text")
    parser.add_argument("--no-speed", action="store_true", help="quality only (no llama-bench, no speed worker)")
    parser.add_argument("--no-quality", action="store_true",
                        help="speed only (no reference, no llama-perplexity): the rounds of a large model's files")
    parser.add_argument("--speed-on", action="append", default=[], metavar="TEXT",
                        help="time only the files whose name contains TEXT (repeatable; default every file): "
                             "a large f16 takes minutes per side")
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
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="slmforge-compare-") as tmp:
        workdir = Path(tmp)
        request = {"mode": "tokenize", "runtime": RUNTIME, "model": str(base), "text_file": str(args.text)}
        llama_text = args.text
        if args.domain:  # slmforge scores the domain beside the main text; llama.cpp its text alone
            material = domain_material(args.domain)
            (workdir / "domains.json").write_text(json.dumps({args.domain: material}), encoding="utf-8")
            llama_text = workdir / "domain.txt"
            llama_text.write_text(material["text"], encoding="utf-8")
            request["domains_file"] = str(workdir / "domains.json")
        tokenized = run_worker(request, timeout_s=600)
        tokens_file = workdir / "tokens.json"
        tokens_file.write_text(json.dumps(tokenized))  # the quality worker's input format
        same_tokens = None
        if args.no_quality:  # the speed worker takes its prompt tokens from the tokens file
            for path in args.gguf:
                warn_if_loaded(f"before timing {path.name}")
                speed_ours, speed_theirs = speed_rounds(path, tokens_file, tools, args, clock)
                results[path.name] = {"slmforge": speed_ours, "llama.cpp": speed_theirs}
        else:
            logits, reference_dir = workdir / "base.kld", workdir / "reference"
            reference_dir.mkdir()
            base_ppl, llama_tokens = clock.time("llama.cpp", llama_base_run, tools, base, llama_text, args, logits)
            scored = tokenized["domains"][args.domain]["tokens"] if args.domain else tokenized["tokens"]
            same_tokens = check_token_streams(scored, llama_tokens)
            reference = domain_view(clock.time("slmforge", slmforge_reference, base, tokens_file, args, reference_dir),
                                    args.domain)
            print(f"slmforge reference: {reference['stored_bytes'] / 1e6:.1f} MB stored, "
                  f"{reference['bytes_per_scored_token']:.0f} bytes per scored token; llama.cpp's base file: "
                  f"{logits.stat().st_size / 1e6:.1f} MB")
            for path in args.gguf:
                if path == base:
                    ours, theirs = {k: reference[k] for k in ("perplexity", "perplexity_se")}, {"ppl": base_ppl}
                else:
                    ours = domain_view(clock.time("slmforge", slmforge_quality, path, tokens_file, args, reference_dir),
                                       args.domain)
                    theirs = clock.time("llama.cpp", llama_kld, tools, path, llama_text, args, logits)
                speed_ours, speed_theirs = {}, {}
                if not args.no_speed and (not args.speed_on or any(t in path.name for t in args.speed_on)):
                    warn_if_loaded(f"before timing {path.name}")
                    speed_ours, speed_theirs = speed_rounds(path, tokens_file, tools, args, clock)
                results[path.name] = {"slmforge": {**ours, **speed_ours}, "llama.cpp": {**theirs, **speed_theirs}}
                print(f"  {path.name}: done (slmforge {clock.spent['slmforge']:.0f} s, "
                      f"llama.cpp {clock.spent['llama.cpp']:.0f} s so far)")
                if args.json:  # written as it goes: an interrupted comparison keeps what it measured
                    args.json.write_text(json.dumps({"same_tokens": same_tokens, "results": results}, indent=2))
    for name, pair in results.items():
        print_table(name, pair["slmforge"], pair["llama.cpp"])
    ratio = clock.spent["slmforge"] / clock.spent["llama.cpp"]
    print(f"\nsame work, wall time: slmforge {clock.spent['slmforge']:.1f} s, llama.cpp's tools "
          f"{clock.spent['llama.cpp']:.1f} s, ratio x{ratio:.2f} (target <= 1.5: {'PASS' if ratio <= 1.5 else 'FAIL'})")
    warn_if_loaded("at end")
    if args.json:
        args.json.write_text(json.dumps({"same_tokens": same_tokens, "results": results, "seconds": clock.spent},
                                        indent=2))


if __name__ == "__main__":
    main()
