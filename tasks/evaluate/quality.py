"""Quality passes over the evaluation chunks, inside a measurement worker (any format's runtime).

`reference_pass` runs the f16 base once and stores its encoded log-probabilities;
`score_against_reference` runs one variant and compares it with the stored reference, one chunk
in memory at a time. Both use the same chunks, ids and scored positions as llama-perplexity, and
also return each chunk's own means (CHUNK_SERIES), for paired intervals over chunks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tasks.evaluate import reference
from tasks.evaluate.metrics import (
    DivergenceAccumulator, PerplexityAccumulator, chunk_ids, chunk_targets, chunk_token_ranges, scored_positions,
    token_nll,
)
from tasks.evaluate.process import peak_rss_bytes, report_progress
from tasks.formats.base import LoadedModel
from tasks.review.intervals import CHUNK_SERIES

BLOCK = reference.ROW_BLOCK
# CHUNK_SERIES: each chunk's own means (every chunk scores the same number of tokens): mean nll
# ("nll"), and against the reference mean KLD ("kld") and top-1 agreement ("top1"). Two variants
# scored on the same chunks are compared chunk by chunk (tasks.review.intervals): a paired interval.


def _ranges(tokens: list[int], n_ctx: int, max_chunks: int | None) -> list[tuple[int, int]]:
    ranges = chunk_token_ranges(len(tokens), n_ctx, max_chunks)
    if not ranges:
        raise ValueError(f"evaluation text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
    return ranges


def reference_pass(model: LoadedModel, record: dict, *, n_ctx: int, max_chunks: int | None, out_dir: Path) -> dict:
    """Store the base's encoded log-probs per chunk; return its perplexity and the stored size."""
    tokens, bos = record["tokens"], record.get("bos")
    ranges = _ranges(tokens, n_ctx, max_chunks)
    ppl, stored, chunk_nll = PerplexityAccumulator(), 0, []
    for index, (start, end) in enumerate(ranges):
        logits = model.chunk_logits(chunk_ids(tokens, start, end, bos), scored_positions(n_ctx).start)
        nll = token_nll(np.asarray(logits, dtype=np.float32), chunk_targets(tokens, start, end))[0]
        ppl.add(nll)
        chunk_nll.append(float(nll.mean()))
        stored += reference.write_chunk(out_dir, index, logits)
        report_progress("reference chunks", index + 1, len(ranges))
    value, stderr = ppl.result()
    figures = {"perplexity": value, "perplexity_se": stderr, "chunks": len(ranges), "n_ctx": n_ctx,
               CHUNK_SERIES: {"nll": chunk_nll}}
    summary = {**figures, "ranges": ranges, "n_vocab": model.n_vocab, "scored_tokens": ppl.count,
               "stored_bytes": stored, "bytes_per_scored_token": stored / ppl.count,
               "worker_peak_rss_bytes": peak_rss_bytes()}  # the pass is this worker's last work
    (out_dir / "reference.json").write_text(json.dumps(summary, indent=2))
    return summary


def score_against_reference(model: LoadedModel, record: dict, reference_dir: Path) -> dict[str, float]:
    """Perplexity of the variant and its divergence from the stored reference, chunk by chunk."""
    tokens, bos = record["tokens"], record.get("bos")
    ref = reference.read_record(reference_dir)
    if model.n_vocab != ref["n_vocab"]:
        raise ValueError(f"the variant's vocabulary has {model.n_vocab} tokens, the reference's {ref['n_vocab']}: "
                         "they were not made from the same checkpoint")
    n_ctx, ranges = ref["n_ctx"], ref["ranges"]
    ppl, divergence = PerplexityAccumulator(), DivergenceAccumulator()
    series: dict[str, list[float]] = {"nll": [], "kld": [], "top1": []}
    for index, (start, end) in enumerate(ranges):
        ppl_before, blocks_before = (ppl.nll, ppl.count), len(divergence.kld)
        logits = model.chunk_logits(chunk_ids(tokens, start, end, bos), scored_positions(n_ctx).start)
        base, targets = reference.read_chunk(reference_dir, index), chunk_targets(tokens, start, end)
        for row in range(0, len(targets), BLOCK):
            rows = slice(row, row + BLOCK)
            block = np.asarray(logits[rows], dtype=np.float32)
            nll, log_sum_exp = token_nll(block, targets[rows])
            ppl.add(nll)
            base_lp = reference.decode_logprobs(base.scale[rows], base.min_log_prob[rows], base.q[rows])
            divergence.add(block, nll, log_sum_exp, base_lp, targets[rows])
        series["nll"].append((ppl.nll - ppl_before[0]) / (ppl.count - ppl_before[1]))
        series["kld"].append(float(np.concatenate(divergence.kld[blocks_before:]).mean()))
        series["top1"].append(float(np.concatenate(divergence.same_top[blocks_before:]).mean()))
        report_progress("quality chunks", index + 1, len(ranges))
    value, stderr = ppl.result()
    return {"perplexity": value, "perplexity_se": stderr, "chunks": len(ranges), "n_ctx": n_ctx,
            **divergence.result(), CHUNK_SERIES: series}
