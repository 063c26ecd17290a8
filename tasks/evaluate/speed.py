"""The speed protocol every format is timed with, after llama-bench.

pp = one batch of `prefill_tokens` random tokens from an empty cache; tg = `decode_tokens`
single-token steps from an empty cache (or after `depth` untimed context tokens, as llama-bench -d);
one untimed warm-up run of each, then `repetitions` timed runs reported as mean and sample sd.
"""

from __future__ import annotations

import random

from tasks.evaluate.metrics import mean_sd
from tasks.evaluate.process import report_progress
from tasks.formats.base import LoadedModel


def measure_speed(
    model: LoadedModel, *, prefill_tokens: int, decode_tokens: int, repetitions: int, depths: list[int],
    ttft_prompt: list[int], seed: int = 1234,
) -> dict[str, float]:
    """prefill_tps, decode_tps (and at each depth), ttft_ms, each with its _sd; load_s."""
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
    result: dict[str, float] = {"load_s": model.load_s}
    total = len(runs) * (repetitions + 1)
    for position, (name, run) in enumerate(runs.items()):
        samples = []
        for repetition in range(repetitions + 1):
            value = run()
            if repetition:  # the first run is the warm-up: first touch of weights, kernel set-up
                samples.append(value)
            report_progress(f"speed {name}", position * (repetitions + 1) + repetition + 1, total)
        result[name], result[f"{name}_sd"] = mean_sd(samples)
    return result
