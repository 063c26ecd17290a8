"""The f16 reference, computed once and stored: every variant is scored against it alone.

Stored form: llama-perplexity's own `--kl-divergence-base` encoding, per scored position:
log-probabilities clamped to [max - 16 nats, max] and quantized to uint16 over that range, with
a float32 scale and offset (llama.cpp perplexity.cpp, `log_softmax` / `process_logits`). Chosen
because it is what llama-perplexity itself scores KL divergence against, so the figures agree with
it by construction; the quantization step is 16/65535 = 2.4e-4 nats, and terms below -16 nats
(p < 1.1e-7) are dropped exactly as llama.cpp drops them. Size: 2 x n_vocab + 8 bytes per scored
token, bounded by evaluate.max_chunks x (n_ctx/2 - 1) tokens; one chunk is read at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOGIT_RANGE = 16.0  # nats below the top logit that are kept (llama.cpp's value)
LEVELS = 65535.0
ROW_BLOCK = 16  # rows encoded/scored at once: the float temporaries stay at 16 x n_vocab (3 MB each for 49k)


def encode_logprobs(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, min_log_prob, q) of each row of float32 logits, as llama.cpp encodes them."""
    logits = np.asarray(logits, dtype=np.float32)
    top = logits.max(axis=1)
    low = np.maximum(logits.min(axis=1), top - np.float32(LOGIT_RANGE))
    sum_exp = np.exp(logits - top[:, None]).sum(axis=1, dtype=np.float64)
    log_sum_exp = np.log(sum_exp).astype(np.float32)
    min_log_prob = (low - top - log_sum_exp).astype(np.float32)
    scale = ((top - low) / np.float32(LEVELS)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    q = np.where(logits > low[:, None], np.rint((logits - low[:, None]) / safe[:, None]), 0)
    q[scale == 0] = 0
    return scale, min_log_prob, q.astype(np.uint16)


def decode_logprobs(scale: np.ndarray, min_log_prob: np.ndarray, q: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of stored rows."""
    return scale[:, None] * q.astype(np.float32) + min_log_prob[:, None]


def chunk_file(folder: Path, index: int) -> Path:
    return folder / f"chunk-{index:05d}.npz"


def write_chunk(folder: Path, index: int, logits: np.ndarray) -> int:
    """Encode one chunk's scored rows into `folder`; returns the bytes written."""
    parts = [encode_logprobs(logits[i : i + ROW_BLOCK]) for i in range(0, len(logits), ROW_BLOCK)]
    scale, min_log_prob, q = (np.concatenate(column) for column in zip(*parts))
    path = chunk_file(folder, index)
    with path.open("wb") as handle:  # uncompressed npz: loads without a decompression pass
        np.savez(handle, scale=scale, min_log_prob=min_log_prob, q=q)
    return path.stat().st_size


@dataclass
class ReferenceChunk:
    scale: np.ndarray
    min_log_prob: np.ndarray
    q: np.ndarray


def read_chunk(folder: Path, index: int) -> ReferenceChunk:
    with np.load(chunk_file(folder, index)) as data:
        return ReferenceChunk(data["scale"], data["min_log_prob"], data["q"])


def read_record(folder: Path) -> dict:
    """reference.json: chunk ranges, n_vocab, the base's own figures and the stored size."""
    return json.loads((folder / "reference.json").read_text())
