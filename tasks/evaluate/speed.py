"""The speed protocol every format is timed with, after llama-bench.

pp = one batch of `prefill_tokens` random tokens from an empty cache; tg = `decode_tokens`
single-token steps from an empty cache (or after `depth` untimed context tokens, as llama-bench -d);
one untimed warm-up run of each, then `repetitions` timed runs reported as mean and sample sd.

With an anchor (tasks.evaluate.anchor), each run of a figure is paired with the same run of the
f16 base, in ABBA order, and the figure per anchor is reported too: `<figure>_rel` (the mean of the
per-repetition ratios), `<figure>_rel_se` (their standard error: the noise between rounds, drift
included) and `<figure>_anchor` (the anchor's own mean).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from tasks.evaluate.metrics import mean_sd
from tasks.evaluate.process import report_progress
from tasks.formats.base import LoadedModel


def speed_runs(model: LoadedModel, *, prefill_tokens: int, decode_tokens: int, depths: list[int],
               ttft_prompt: list[int], seed: int = 1234) -> dict[str, Callable[[], float]]:
    """figure name -> one timed run of it on `model`."""
    rng = random.Random(seed)

    def random_tokens(n: int) -> list[int]:
        return [rng.randrange(model.n_vocab) for _ in range(n)]

    runs = {
        "prefill_tps": lambda: prefill_tokens / model.time_prefill(random_tokens(prefill_tokens)),
        "decode_tps": lambda: decode_tokens / model.time_decode(decode_tokens, [], random_tokens(decode_tokens)),
        "ttft_ms": lambda: model.time_first_token(ttft_prompt) * 1000.0,
    }
    for depth in depths:
        runs[f"decode_tps_d{depth}"] = lambda d=depth: decode_tokens / model.time_decode(
            decode_tokens, random_tokens(d), random_tokens(decode_tokens))
    return runs


def measure_speed(
    model: LoadedModel, *, prefill_tokens: int, decode_tokens: int, repetitions: int, depths: list[int],
    ttft_prompt: list[int], seed: int = 1234, anchor=None,
) -> dict[str, float]:
    """prefill_tps, decode_tps (and at each depth), ttft_ms, each with its _sd; load_s; with an
    anchor (`anchor.burst(name) -> value`), each figure's _rel, _rel_se and _anchor as well."""
    runs = speed_runs(model, prefill_tokens=prefill_tokens, decode_tokens=decode_tokens, depths=depths,
                      ttft_prompt=ttft_prompt, seed=seed)
    result: dict[str, float] = {"load_s": model.load_s}
    total = len(runs) * (repetitions + 1)
    for position, (name, run) in enumerate(runs.items()):
        samples, anchored = [], []
        for repetition in range(repetitions + 1):
            if anchor is None:
                value = run()
            elif repetition % 2 == 0:
                value, anchor_value = run(), anchor.burst(name)
            else:
                anchor_value = anchor.burst(name)
                value = run()
            if repetition:  # the first run is the warm-up: first touch of weights, kernel set-up
                samples.append(value)
                if anchor is not None:
                    anchored.append(anchor_value)
            report_progress(f"speed {name}", position * (repetitions + 1) + repetition + 1, total)
        result[name], result[f"{name}_sd"] = mean_sd(samples)
        if anchor is not None:
            result.update(relative_figures(name, samples, anchored))
    return result


def relative_figures(name: str, samples: list[float], anchored: list[float]) -> dict[str, float]:
    """The per-round ratios of a figure to its anchor: mean, standard error, and the anchor's mean."""
    ratio, sd = mean_sd([v / a for v, a in zip(samples, anchored, strict=True)])
    return {f"{name}_rel": ratio, f"{name}_rel_se": sd / math.sqrt(len(samples)),
            f"{name}_anchor": mean_sd(anchored)[0]}
