"""Run an ONNX Runtime GenAI folder: load it, get full logits, generate greedily, time it.

Facts this module relies on (checked with onnxruntime-genai 0.14.1, onnxruntime 1.32.0):
  * After `Generator.append_tokens(ids)` the "logits" output has shape (1, len(ids), vocab):
    every appended position, not only the last, so perplexity / KL need no raw ORT session.
    A second append_tokens on the same generator yields logits for the new tokens only.
  * `Generator.get_logits()` returns only the last position (1, 1, vocab).
  * Threads are set through a genai_config overlay (session_options.intra_op_num_threads).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Ordinary word-piece ids for synthetic timing prompts: far from the special tokens at the start
# of typical vocabularies, so no chat/eos control token ends generation or skews attention.
_SYNTHETIC_ID_START = 1000


@dataclass
class OnnxModel:
    """A loaded GenAI folder. `og_model` is an `onnxruntime_genai.Model`."""

    folder: Path
    og_model: Any
    threads: int
    vocab_size: int
    context_length: int
    eos_token_ids: tuple[int, ...]
    load_s: float


def load_onnx_model(folder: Path | str, threads: int = 2) -> OnnxModel:
    """Load a GenAI folder on the CPU EP with `threads` intra-op threads."""
    import onnxruntime_genai as og  # imported lazily: optional dependency

    folder = Path(folder)
    genai_cfg = json.loads((folder / "genai_config.json").read_text())["model"]
    start = time.perf_counter()
    cfg = og.Config(str(folder))
    # The folder may have been built for CUDA; measurements here are CPU-only.
    cfg.clear_providers()
    # inter_op 1: a decoder graph is a chain, extra inter-op threads only add contention.
    session_options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": session_options}}}))
    og_model = og.Model(cfg)
    load_s = time.perf_counter() - start
    eos = genai_cfg.get("eos_token_id", [])
    return OnnxModel(
        folder=folder,
        og_model=og_model,
        threads=threads,
        vocab_size=int(genai_cfg["vocab_size"]),
        context_length=int(genai_cfg["context_length"]),
        eos_token_ids=tuple(eos if isinstance(eos, list) else [eos]),
        load_s=load_s,
    )


def _generator(model: OnnxModel, max_length: int, min_length: int = 0) -> Any:
    import onnxruntime_genai as og

    if max_length > model.context_length:
        raise ValueError(f"{max_length} tokens exceed the model context of {model.context_length}")
    params = og.GeneratorParams(model.og_model)
    # max_length sizes the shared KV buffer (past_present_share_buffer), so keep it tight.
    params.set_search_options(do_sample=False, max_length=max_length, min_length=min_length)
    return og.Generator(model.og_model, params)


def _ids(token_ids: list[int]) -> np.ndarray:
    return np.asarray(token_ids, dtype=np.int32)


def logits_for_tokens(model: OnnxModel, token_ids: list[int]) -> np.ndarray:
    """Next-token logits for every position of `token_ids`, shape (n_tokens, n_vocab), float32.

    Row i is the distribution for token i+1 given tokens 0..i. Each call starts a fresh
    generator (empty KV cache), so chunks are scored independently, like llama-perplexity.
    """
    if not token_ids:
        raise ValueError("token_ids is empty")
    gen = _generator(model, len(token_ids))
    gen.append_tokens(_ids(token_ids))
    logits = np.asarray(gen.get_output("logits"), dtype=np.float32)
    if logits.shape != (1, len(token_ids), model.vocab_size):
        raise RuntimeError(f"unexpected logits shape {logits.shape} for {len(token_ids)} tokens")
    # Copy: the array may view a buffer the generator reuses; it must outlive `gen`.
    return logits[0].copy()


def greedy_generate(model: OnnxModel, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of `prompt_ids`; stops at EOS (not included) or `max_new_tokens`."""
    gen = _generator(model, len(prompt_ids) + max_new_tokens)
    gen.append_tokens(_ids(prompt_ids))
    out: list[int] = []
    while not gen.is_done() and len(out) < max_new_tokens:
        gen.generate_next_token()
        token = int(gen.get_next_tokens()[0])
        if token in model.eos_token_ids:
            break
        out.append(token)
    return out


def synthetic_ids(n_tokens: int, vocab_size: int) -> list[int]:
    """Deterministic, ordinary-token prompt of length n for timing (content does not matter)."""
    span = max(1, vocab_size - _SYNTHETIC_ID_START)
    return [_SYNTHETIC_ID_START + (i * 7919) % span for i in range(n_tokens)]


def time_prefill(model: OnnxModel, n_tokens: int = 512) -> float:
    """Seconds to run one prompt of `n_tokens` through the model (after a short warm-up)."""
    ids = synthetic_ids(n_tokens, model.vocab_size)
    # Warm-up: first run pays for weight prepacking and allocator growth.
    warm = _generator(model, 16)
    warm.append_tokens(_ids(ids[:16]))
    gen = _generator(model, n_tokens)
    start = time.perf_counter()
    gen.append_tokens(_ids(ids))
    return time.perf_counter() - start


def time_decode(model: OnnxModel, n_tokens: int = 128, prompt_tokens: int = 16) -> float:
    """Seconds to generate exactly `n_tokens` tokens one by one after a short prompt."""
    ids = synthetic_ids(prompt_tokens, model.vocab_size)
    total = prompt_tokens + 1 + n_tokens  # +1: the untimed warm-up step
    # min_length=max_length masks EOS so that exactly n_tokens are decoded.
    gen = _generator(model, total, min_length=total)
    gen.append_tokens(_ids(ids))
    gen.generate_next_token()  # warm-up step, not timed
    start = time.perf_counter()
    for _ in range(n_tokens):
        gen.generate_next_token()
    return time.perf_counter() - start


def time_first_token(model: OnnxModel, prompt_ids: list[int]) -> float:
    """Seconds from handing over `prompt_ids` to holding the first generated token (TTFT)."""
    gen = _generator(model, len(prompt_ids) + 1)
    start = time.perf_counter()
    gen.append_tokens(_ids(prompt_ids))
    gen.generate_next_token()
    gen.get_next_tokens()
    return time.perf_counter() - start
