"""Quality statistics, computed the way llama.cpp's llama-perplexity computes them.

Perplexity: the text is tokenized once, cut into chunks of n_ctx tokens; each chunk is evaluated
from an empty cache and only its second half is scored (every scored token has at least n_ctx/2
tokens of context), exactly as `llama-perplexity` does, so figures compare with its tables.

KL divergence, top-token agreement and Δp: each variant's logits are compared with the stored f16
reference (tasks.evaluate.reference, llama-perplexity's own encoding) term by term as llama.cpp's
`kl_divergence` does, in row blocks so that no float64 copy of a whole chunk is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks.evaluate.reference import LOGIT_RANGE


def scored_positions(n_ctx: int) -> slice:
    """Positions whose logits are scored: llama-perplexity's `first = n_ctx/2` .. n_ctx-2."""
    return slice(n_ctx // 2, n_ctx - 1)


def chunk_token_ranges(n_tokens: int, n_ctx: int, max_chunks: int | None) -> list[tuple[int, int]]:
    """(start, end) of each full chunk; a trailing partial chunk is dropped, as llama.cpp does."""
    n_chunks = n_tokens // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    return [(i * n_ctx, (i + 1) * n_ctx) for i in range(n_chunks)]


def chunk_targets(tokens: list[int], start: int, end: int) -> np.ndarray:
    """Scored position j predicts token j+1: the chunk's tokens first+1 .. end-1."""
    return np.asarray(tokens[start + (end - start) // 2 + 1 : end], dtype=np.int64)


def chunk_ids(tokens: list[int], start: int, end: int, bos: int | None) -> list[int]:
    """The ids a chunk is run on: llama-perplexity puts BOS first in every chunk (if the vocab has one)."""
    ids = [int(t) for t in tokens[start:end]]
    if bos is not None:
        ids[0] = bos
    return ids


def token_nll(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(negative log-likelihood of each target, log-sum-exp of each row), float64."""
    top = logits.max(axis=1, keepdims=True)
    log_sum_exp = top[:, 0].astype(np.float64) + np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64))
    return log_sum_exp - logits[np.arange(len(targets)), targets], log_sum_exp


@dataclass
class PerplexityAccumulator:
    """Running negative log-likelihood over scored tokens."""

    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0

    def add(self, token_nll: np.ndarray) -> None:
        self.nll += float(token_nll.sum())
        self.nll2 += float((token_nll**2).sum())
        self.count += len(token_nll)

    def result(self) -> tuple[float, float]:
        """(perplexity, its standard error), as llama-perplexity's 'Final estimate'."""
        mean = self.nll / self.count
        variance = self.nll2 / self.count - mean * mean
        stderr_nll = np.sqrt(variance / (self.count - 1)) if variance > 0 and self.count > 1 else 0.0
        ppl = float(np.exp(mean))
        return ppl, float(stderr_nll * ppl)


@dataclass
class DivergenceAccumulator:
    """Per-token KL divergence, top-token agreement and Δp of a variant against the reference."""

    kld: list[np.ndarray] = field(default_factory=list)
    same_top: list[np.ndarray] = field(default_factory=list)
    delta_p: list[np.ndarray] = field(default_factory=list)

    def add(self, logits: np.ndarray, nll: np.ndarray, log_sum_exp: np.ndarray, base_logprobs: np.ndarray,
            targets: np.ndarray) -> None:
        """One block of rows: the variant's logits with their nll and log-sum-exp, the base's log-probs."""
        kept = base_logprobs > np.float32(-LOGIT_RANGE)  # llama.cpp drops terms below -16 nats
        base_p = np.where(kept, np.exp(base_logprobs), np.float32(0.0))
        variant_lp = logits - log_sum_exp[:, None].astype(np.float32)
        terms = base_p * np.where(kept, base_logprobs - variant_lp, np.float32(0.0))
        self.kld.append(terms.sum(axis=1, dtype=np.float64))
        self.same_top.append(logits.argmax(axis=1) == base_logprobs.argmax(axis=1))
        self.delta_p.append(np.exp(-nll) - np.exp(base_logprobs[np.arange(len(targets)), targets].astype(np.float64)))

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


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0
