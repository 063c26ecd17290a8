"""Measurements on a GGUF through llama-cpp-python; runs only inside an evaluation worker.

Speed follows llama-bench: pp = one batch of N random tokens from an empty cache, tg = N
single-token decodes from an empty cache (or after `depth` prompt tokens), one untimed warm-up
run of each, then `repetitions` timed runs reported as mean and sample sd.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from tasks.evaluate.metrics import log_softmax, mean_sd, score_chunks, scored_positions


def open_model(path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int, logits_all: bool):
    """A llama.cpp model with one context; the batch holds a whole chunk, as llama-perplexity."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(n_ctx, 512),
        n_threads=threads, n_threads_batch=threads, n_gpu_layers=n_gpu_layers,
        logits_all=logits_all, verbose=False,
        # llama-perplexity and llama-bench default to flash_attn=auto, which resolves to on for
        # the CPU; llama-cpp-python's Llama defaults to off. Measured on SmolLM2-135M Q8_0, 1
        # thread: off costs 15 % of pp512 and 5 % of tg128, so the tools' setting is matched.
        flash_attn=True,
    )


def tokenize_text(llm, text: str) -> list[int]:
    """Tokens as llama-perplexity makes them: add_special=true (BOS only if the vocab wants it)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def chunk_logprobs(llm, tokens: list[int], start: int, end: int) -> np.ndarray:
    """Log-probabilities of the scored half of one chunk, evaluated from an empty cache."""
    chunk = list(tokens[start:end])
    if llm.token_bos() >= 0 and _adds_bos(llm):
        chunk[0] = llm.token_bos()  # llama-perplexity puts BOS first in every chunk
    llm.reset()
    llm.eval(chunk)
    n_ctx = end - start
    return log_softmax(np.asarray(llm.scores[:n_ctx], dtype=np.float32)[scored_positions(n_ctx)])


def _adds_bos(llm) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))


def measure_quality(
    model: Path, base: Path | None, tokens: list[int], *, n_ctx: int, max_chunks: int | None,
    threads: int, n_gpu_layers: int,
) -> dict[str, float]:
    """Perplexity of `model`, and its divergence from `base` on the same chunks when given."""
    llm = open_model(model, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, logits_all=True)
    reference = None if base is None else open_model(
        base, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, logits_all=True
    )
    return score_chunks(
        tokens, n_ctx=n_ctx, max_chunks=max_chunks,
        variant=lambda start, end: chunk_logprobs(llm, tokens, start, end),
        base=None if reference is None else (lambda start, end: chunk_logprobs(reference, tokens, start, end)),
    )


def measure_speed(
    model: Path, *, threads: int, n_gpu_layers: int, prefill_tokens: int, decode_tokens: int,
    repetitions: int, depths: list[int], ttft_prompt: list[int], seed: int = 1234,
) -> dict[str, float]:
    """llama-bench-style prefill/decode speed plus load time, TTFT and decode at depth."""
    n_ctx = max([prefill_tokens, len(ttft_prompt) + 1] + [d + decode_tokens for d in depths]) + 8
    started = time.perf_counter()
    llm = open_model(model, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, logits_all=False)
    load_s = time.perf_counter() - started
    rng = random.Random(seed)
    vocab = llm.n_vocab()

    def random_tokens(n: int) -> list[int]:
        return [rng.randrange(vocab) for _ in range(n)]

    def prefill() -> float:
        llm.reset()
        tokens = random_tokens(prefill_tokens)
        t0 = time.perf_counter()
        llm.eval(tokens)
        return prefill_tokens / (time.perf_counter() - t0)

    def decode(depth: int) -> float:
        llm.reset()
        if depth:
            llm.eval(random_tokens(depth))  # untimed context, as llama-bench -d
        t0 = time.perf_counter()
        for token in random_tokens(decode_tokens):
            llm.eval([token])
        return decode_tokens / (time.perf_counter() - t0)

    def ttft() -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ttft_prompt)
        llm.sample(temp=0.0)  # the first token exists once it is sampled
        return (time.perf_counter() - t0) * 1000.0

    result = {"load_s": load_s, "threads": threads, "n_gpu_layers": n_gpu_layers}
    for name, run in (("prefill_tps", prefill), ("decode_tps", lambda: decode(0)), ("ttft_ms", ttft)):
        result[name], result[f"{name}_sd"] = _repeat(run, repetitions)
    for depth in depths:
        result[f"decode_tps_d{depth}"], result[f"decode_tps_d{depth}_sd"] = _repeat(
            lambda d=depth: decode(d), repetitions
        )
    return result


def _repeat(run, repetitions: int) -> tuple[float, float]:
    run()  # warm-up: first-touch of mmapped weights and kernel set-up are not steady state
    return mean_sd([run() for _ in range(repetitions)])
