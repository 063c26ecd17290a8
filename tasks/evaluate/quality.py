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
from tasks.evaluate.domains import SUMMARY_KLD, figure_name
from tasks.evaluate.metrics import (
    DivergenceAccumulator, PerplexityAccumulator, chunk_ids, chunk_targets, chunk_token_ranges, scored_positions,
    token_nll,
)
from tasks.evaluate.process import peak_rss_bytes, report_progress
from tasks.formats.base import LoadedModel
from tasks.core.intervals import CHUNK_SERIES

BLOCK = reference.ROW_BLOCK
# CHUNK_SERIES: each chunk's own means (every chunk scores the same number of tokens): mean nll
# ("nll"), and against the reference mean KLD ("kld") and top-1 agreement ("top1"). Two variants
# scored on the same chunks are compared chunk by chunk (tasks.core.intervals): a paired interval.


def _ranges(tokens: list[int], n_ctx: int, max_chunks: int | None, what: str = "evaluation text"
            ) -> list[tuple[int, int]]:
    ranges = chunk_token_ranges(len(tokens), n_ctx, max_chunks)
    if not ranges:
        raise ValueError(f"{what} has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
    return ranges


def _domain_tokens(record: dict, name: str) -> list[int] | None:
    """A domain's ids, or None when the tokenizer skipped it (a chat domain without a template)."""
    entry = (record.get("domains") or {}).get(name) or {}
    return entry.get("tokens")


def reference_pass(model: LoadedModel, record: dict, *, n_ctx: int, max_chunks: int | None, out_dir: Path,
                   domain_chunks: dict[str, int] | None = None) -> dict:
    """Store the base's encoded log-probs per chunk; return its perplexity and the stored size.

    The main text's chunks come first (their figures are what they were before domains existed),
    then each domain's (`domain_chunks`: name -> chunks), numbered on from there."""
    tokens, bos = record["tokens"], record.get("bos")
    passes = [(None, tokens, _ranges(tokens, n_ctx, max_chunks))]
    skipped = {}
    for name, chunks in (domain_chunks or {}).items():
        if (ids := _domain_tokens(record, name)) is None:
            skipped[name] = record["domains"][name].get("skipped", "not tokenized")
            continue
        passes.append((name, ids, _ranges(ids, n_ctx, chunks, f"evaluation domain {name!r}")))
    total, index, stored, scored = sum(len(r) for _, _, r in passes), 0, 0, 0
    figures: dict = {CHUNK_SERIES: {}}
    domains: dict[str, dict] = {}
    for name, ids, ranges in passes:
        ppl, chunk_nll, first = PerplexityAccumulator(), [], index
        for start, end in ranges:
            logits = model.chunk_logits(chunk_ids(ids, start, end, bos), scored_positions(n_ctx).start)
            nll = token_nll(np.asarray(logits, dtype=np.float32), chunk_targets(ids, start, end))[0]
            ppl.add(nll)
            chunk_nll.append(float(nll.mean()))
            stored += reference.write_chunk(out_dir, index, logits)
            index += 1
            report_progress("reference chunks", index, total)
        value, stderr = ppl.result()
        scored += ppl.count
        own = {"perplexity": value, "perplexity_se": stderr, "chunks": len(ranges)}
        if name is None:
            figures.update(own, n_ctx=n_ctx, ranges=ranges)
            figures[CHUNK_SERIES]["nll"] = chunk_nll
        else:
            domains[name] = {**own, "ranges": ranges, "first_chunk": first}
            figures.update({figure_name(name, k): v for k, v in own.items()})
            figures[CHUNK_SERIES][figure_name(name, "nll")] = chunk_nll
    summary = {**figures, "domains": domains, "domains_skipped": skipped, "n_vocab": model.n_vocab,
               "scored_tokens": scored, "stored_bytes": stored, "bytes_per_scored_token": stored / scored,
               "worker_peak_rss_bytes": peak_rss_bytes()}  # the pass is this worker's last work
    (out_dir / "reference.json").write_text(json.dumps(summary, indent=2))
    return summary


def score_against_reference(model: LoadedModel, record: dict, reference_dir: Path) -> dict[str, float]:
    """Perplexity of the variant and its divergence from the stored reference, chunk by chunk, on the
    main text and on each domain the reference holds (`<domain>/<figure>`)."""
    tokens, bos = record["tokens"], record.get("bos")
    ref = reference.read_record(reference_dir)
    if model.n_vocab != ref["n_vocab"]:
        raise ValueError(f"the variant's vocabulary has {model.n_vocab} tokens, the reference's {ref['n_vocab']}: "
                         "they were not made from the same checkpoint")
    n_ctx, domains = ref["n_ctx"], ref.get("domains") or {}
    passes = [(None, tokens, ref["ranges"], 0)]
    passes += [(name, _domain_tokens(record, name), d["ranges"], d["first_chunk"]) for name, d in domains.items()]
    total, done = sum(len(ranges) for _, _, ranges, _ in passes), 0
    result: dict = {"n_ctx": n_ctx, CHUNK_SERIES: {}}
    kld_means = []
    for name, ids, ranges, first in passes:
        ppl, divergence = PerplexityAccumulator(), DivergenceAccumulator()
        series: dict[str, list[float]] = {"nll": [], "kld": [], "top1": []}
        for offset, (start, end) in enumerate(ranges):
            _score_chunk(model, ids, bos, (start, end), n_ctx, reference_dir, first + offset, ppl, divergence, series)
            done += 1
            report_progress("quality chunks", done, total)
        value, stderr = ppl.result()
        figures = {"perplexity": value, "perplexity_se": stderr, "chunks": len(ranges), **divergence.result()}
        kld_means.append(figures["kld_mean"])
        if name is None:
            result.update(figures)
            result[CHUNK_SERIES].update(series)
        else:
            result.update({figure_name(name, k): v for k, v in figures.items()})
            result[CHUNK_SERIES].update({figure_name(name, k): v for k, v in series.items()})
    if domains:
        result[SUMMARY_KLD] = float(np.mean(kld_means))
    return result


def _score_chunk(model: LoadedModel, tokens: list[int], bos: int | None, span: tuple[int, int], n_ctx: int,
                 reference_dir: Path, index: int, ppl: PerplexityAccumulator, divergence: DivergenceAccumulator,
                 series: dict[str, list[float]]) -> None:
    """One chunk against stored reference chunk `index`: into the accumulators, and its own means into `series`."""
    start, end = span
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
