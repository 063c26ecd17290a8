"""Run llama.cpp's reference tools and parse their output into typed results.

The binaries come from `tests/benchmarks/build_llama_tools.sh` (llama.cpp vendored in the
llama-cpp-python 0.3.36 sdist, commit 0c1e570). They are the yardstick our own metrics are
checked against, so the parsers match the exact lines that build prints (checked on real
runs) and fail loudly, rather than return a guess, when a line is missing.

Output formats relied on (commit 0c1e570):
  llama-perplexity            `0.17.036.511 I Final estimate: PPL = 12.3243 +/- 0.51774`
                              (log lines carry a time + level prefix, so nothing is anchored)
  llama-perplexity --kl-divergence   no "Final estimate"; a statistics block instead:
                              `Mean PPL(Q)                   :  13.381554 ±   0.571349`
                              `Mean    KLD:   0.056825 ±   0.000980`
                              `99.0%   KLD:   0.294471`
                              `RMS Δp    :  6.940 ± 0.177 %`
                              `Same top p: 87.059 ± 0.526 %`  (the per-chunk table header
                              also says "Same top p", but without the colon)
  llama-bench -o json         a JSON list on stdout, one object per test; pp rows have
                              n_gen == 0, tg rows n_prompt == 0; logs go to stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("llama-perplexity", "llama-bench", "llama-quantize")

# A float as llama.cpp prints it, including the nan/inf a broken model produces
# (so that case parses and is visible, instead of reading as "line missing").
_NUM = r"([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))"


class LlamaToolError(RuntimeError):
    """A llama.cpp tool failed or printed no line we could parse."""


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    ppl_err: float


@dataclass(frozen=True)
class KldResult:
    ppl: float  # perplexity of the quantized model, same chunks as the base
    kld_mean: float
    kld_p99: float
    same_top_p: float  # fraction 0-1 (llama.cpp prints a percentage)
    rms_delta_p: float  # fraction 0-1 (llama.cpp prints a percentage)


@dataclass(frozen=True)
class BenchResult:
    pp_tps: float  # prompt processing, tokens/s
    pp_sd: float
    tg_tps: float  # text generation, tokens/s
    tg_sd: float


def find_tools(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Locate the built tools under `root` (repo root, a build dir or a bin dir).

    Raises if llama-perplexity or llama-bench is missing; llama-quantize is optional.
    """
    root = Path(root)
    # Only the known layouts: rglob over .peers would walk a 200 MB source tree.
    dirs = [root, root / "bin", root / "build" / "bin"]
    dirs += sorted(root.glob("*/build/bin")) + sorted(root.glob(".peers/*/build/bin"))
    found: dict[str, Path] = {}
    for name in TOOLS:
        for d in dirs:
            path = d / name
            if path.is_file() and os.access(path, os.X_OK):
                found[name] = path
                break
    missing = [n for n in ("llama-perplexity", "llama-bench") if n not in found]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found under {root}; "
            "`make peers` prints the folder of the one llama.cpp build (the binding's own)"
        )
    return found


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _fail(binary: str | os.PathLike[str], why: str, output: str) -> LlamaToolError:
    # llama.cpp logs from a worker thread that is never joined (upstream issue 22142), so
    # a tool that exits early on an error can lose its last lines, or all of them.
    tail = _tail(output) or "(empty: llama.cpp's async logger can drop lines on early exit)"
    return LlamaToolError(f"{Path(binary).name}: {why}\n--- last lines of its output ---\n{tail}")


def _run(binary: str | os.PathLike[str], args: Sequence[str], *, merge: bool) -> str:
    """Run the tool; return its output (stdout+stderr when `merge`, else stdout).

    llama-perplexity splits its report across both streams, so it is merged;
    llama-bench's JSON is on stdout alone and must not be mixed with its logs.
    """
    proc = subprocess.run(
        [os.fspath(binary), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        check=False,
    )
    out = proc.stdout.decode("utf-8", errors="replace")  # "Δp" is UTF-8
    if proc.returncode != 0:
        err = "" if merge else proc.stderr.decode("utf-8", errors="replace")
        cmd = " ".join([os.fspath(binary), *args])
        raise _fail(binary, f"exit code {proc.returncode} from: {cmd}", out + err)
    return out


def _grab(binary: str | os.PathLike[str], line: str, pattern: str, output: str,
          groups: int = 1) -> list[float]:
    """The first match of `pattern` as floats; else an error naming the expected `line`."""
    match = re.search(pattern, output)
    if match is None:
        raise _fail(binary, f"expected line {line!r} not found in its output", output)
    return [float(match.group(i + 1)) for i in range(groups)]


def _ppl_args(model: str | os.PathLike[str], text_file: str | os.PathLike[str],
              n_ctx: int, chunks: int, threads: int) -> list[str]:
    return ["-m", os.fspath(model), "-f", os.fspath(text_file),
            "-c", str(n_ctx), "--chunks", str(chunks), "-t", str(threads)]


def run_llama_perplexity(binary: str | os.PathLike[str], model: str | os.PathLike[str],
                         text_file: str | os.PathLike[str], *, n_ctx: int, chunks: int,
                         threads: int) -> PerplexityResult:
    """Perplexity of `model` on `text_file`, as llama-perplexity's "Final estimate"."""
    out = _run(binary, _ppl_args(model, text_file, n_ctx, chunks, threads), merge=True)
    ppl, err = _grab(binary, "Final estimate: PPL = <x> +/- <err>",
                     rf"Final estimate: PPL = {_NUM} \+/- {_NUM}", out, groups=2)
    return PerplexityResult(ppl=ppl, ppl_err=err)


def run_llama_kld(binary: str | os.PathLike[str], base_model: str | os.PathLike[str],
                  model: str | os.PathLike[str], text_file: str | os.PathLike[str], *,
                  n_ctx: int, chunks: int, threads: int,
                  workdir: str | os.PathLike[str]) -> KldResult:
    """KL divergence of `model` against `base_model` over the same chunks.

    Two runs: the base saves its logits to `workdir`, the variant reads them back. The file
    is vocab x tokens in size (~400 MB for 16 x 512 tokens, 49k vocab), so it is removed
    after use rather than kept across calls (a stale one would silently mismatch anyway).
    """
    base_file = Path(workdir) / f"{Path(base_model).stem}.c{n_ctx}.k{chunks}.kld"
    args = _ppl_args(base_model, text_file, n_ctx, chunks, threads)
    try:
        _run(binary, [*args, "--kl-divergence-base", os.fspath(base_file)], merge=True)
        args = _ppl_args(model, text_file, n_ctx, chunks, threads)
        out = _run(binary, [*args, "--kl-divergence-base", os.fspath(base_file),
                            "--kl-divergence"], merge=True)
    finally:
        base_file.unlink(missing_ok=True)
    return KldResult(
        ppl=_grab(binary, "Mean PPL(Q)  : <x>", rf"Mean PPL\(Q\)\s*:\s*{_NUM}", out)[0],
        kld_mean=_grab(binary, "Mean    KLD: <x>", rf"Mean\s+KLD:\s*{_NUM}", out)[0],
        kld_p99=_grab(binary, "99.0%   KLD: <x>", rf"99\.0%\s+KLD:\s*{_NUM}", out)[0],
        same_top_p=_grab(binary, "Same top p: <x> %", rf"Same top p:\s*{_NUM}", out)[0] / 100.0,
        rms_delta_p=_grab(binary, "RMS Δp    : <x> %", rf"RMS Δp\s*:\s*{_NUM}", out)[0] / 100.0,
    )


def _bench_row(binary: str | os.PathLike[str], rows: list[dict[str, Any]], out: str,
               n_prompt: int, n_gen: int) -> tuple[float, float]:
    for row in rows:
        if row.get("n_prompt") == n_prompt and row.get("n_gen") == n_gen:
            return float(row["avg_ts"]), float(row["stddev_ts"])
    raise _fail(binary, f"no JSON result with n_prompt={n_prompt}, n_gen={n_gen}", out)


def run_llama_bench(binary: str | os.PathLike[str], model: str | os.PathLike[str], *,
                    threads: int, n_prompt: int = 512, n_gen: int = 128,
                    reps: int = 3) -> BenchResult:
    """Prompt-processing and generation speed (tokens/s, mean and stddev over `reps`)."""
    out = _run(binary, ["-m", os.fspath(model), "-p", str(n_prompt), "-n", str(n_gen),
                        "-t", str(threads), "-r", str(reps), "-o", "json"], merge=False)
    try:
        rows = json.loads(out)
    except json.JSONDecodeError as exc:
        raise _fail(binary, f"stdout is not JSON ({exc})", out) from exc
    if not isinstance(rows, list):
        raise _fail(binary, "JSON output is not a list of results", out)
    pp_tps, pp_sd = _bench_row(binary, rows, out, n_prompt, 0)
    tg_tps, tg_sd = _bench_row(binary, rows, out, 0, n_gen)
    return BenchResult(pp_tps=pp_tps, pp_sd=pp_sd, tg_tps=tg_tps, tg_sd=tg_sd)
