"""Quality statistics, computed the way llama.cpp's llama-perplexity computes them.

Perplexity: the text is tokenized once, cut into chunks of n_ctx tokens; each chunk is evaluated
from an empty cache and only its second half is scored (every scored token has at least n_ctx/2
tokens of context), exactly as `llama-perplexity` does, so figures compare with its tables.

KL divergence: the base and the variant are run on the same chunks and compared position by
position while both logit matrices are in memory; nothing vocabulary-sized is written to disk.
The result is exact (float64 accumulation), not a top-k approximation: the only error is
floating-point rounding, far below the ±uncertainty reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (rows = positions)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def scored_positions(n_ctx: int) -> slice:
    """Positions whose logits are scored: llama-perplexity's `first = n_ctx/2` .. n_ctx-2."""
    return slice(n_ctx // 2, n_ctx - 1)


def chunk_token_ranges(n_tokens: int, n_ctx: int, max_chunks: int | None) -> list[tuple[int, int]]:
    """(start, end) of each full chunk; a trailing partial chunk is dropped, as llama.cpp does."""
    n_chunks = n_tokens // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    return [(i * n_ctx, (i + 1) * n_ctx) for i in range(n_chunks)]


@dataclass
class PerplexityAccumulator:
    """Running negative log-likelihood over scored tokens."""

    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0

    def add(self, logprobs: np.ndarray, targets: np.ndarray) -> None:
        token_nll = -logprobs[np.arange(len(targets)), targets]
        self.nll += float(token_nll.sum())
        self.nll2 += float((token_nll**2).sum())
        self.count += len(targets)

    def result(self) -> tuple[float, float]:
        """(perplexity, its standard error), as llama-perplexity's 'Final estimate'."""
        mean = self.nll / self.count
        variance = self.nll2 / self.count - mean * mean
        stderr_nll = np.sqrt(variance / (self.count - 1)) if variance > 0 and self.count > 1 else 0.0
        ppl = float(np.exp(mean))
        return ppl, float(stderr_nll * ppl)


@dataclass
class DivergenceAccumulator:
    """Per-token KL divergence, top-token agreement and Δp of a variant against the base."""

    kld: list[np.ndarray] = field(default_factory=list)
    same_top: list[np.ndarray] = field(default_factory=list)
    delta_p: list[np.ndarray] = field(default_factory=list)

    def add(self, base_logprobs: np.ndarray, variant_logprobs: np.ndarray, targets: np.ndarray) -> None:
        base_p = np.exp(base_logprobs)
        self.kld.append((base_p * (base_logprobs - variant_logprobs)).sum(axis=-1))
        self.same_top.append(base_logprobs.argmax(axis=-1) == variant_logprobs.argmax(axis=-1))
        rows = np.arange(len(targets))
        self.delta_p.append(np.exp(variant_logprobs[rows, targets]) - base_p[rows, targets])

    def result(self) -> dict[str, float]:
        kld = np.concatenate(self.kld)
        same = np.concatenate(self.same_top).astype(np.float64)
        dp = np.concatenate(self.delta_p)
        n = len(kld)
        return {
            "kld_mean": float(kld.mean()),
            "kld_mean_se": float(kld.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            "kld_p99": float(np.percentile(kld, 99)),
            "kld_max": float(kld.max()),
            "top1_agreement": float(same.mean()),
            "top1_agreement_se": float(same.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            "delta_p_rms": float(np.sqrt((dp**2).mean())),
            "delta_p_mean": float(dp.mean()),
            "scored_tokens": n,
        }


ChunkLogprobs = Callable[[int, int], np.ndarray]  # (start, end) -> log-probs of the scored half


def score_chunks(
    tokens: list[int], *, n_ctx: int, max_chunks: int | None,
    variant: ChunkLogprobs, base: ChunkLogprobs | None = None,
) -> dict[str, float]:
    """Perplexity of `variant` over the chunks, and its divergence from `base` when given.

    Any runtime plugs in through the two callables, so GGUF and ONNX variants are scored by
    this one loop on the same positions.
    """
    ranges = chunk_token_ranges(len(tokens), n_ctx, max_chunks)
    if not ranges:
        raise ValueError(f"evaluation text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
    ppl, divergence = PerplexityAccumulator(), DivergenceAccumulator()
    for start, end in ranges:
        # scored position j predicts token j+1: targets are the chunk's tokens first+1 .. end-1
        targets = np.asarray(tokens[start + (end - start) // 2 + 1 : end], dtype=np.int64)
        variant_lp = variant(start, end)
        ppl.add(variant_lp, targets)
        if base is not None:
            divergence.add(base(start, end), variant_lp, targets)
    value, stderr = ppl.result()
    result = {"perplexity": value, "perplexity_se": stderr, "chunks": len(ranges), "n_ctx": n_ctx}
    if base is not None:
        result.update(divergence.result())
    return result


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0
