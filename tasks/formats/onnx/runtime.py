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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def new_generator(model: OnnxModel, max_length: int, min_length: int = 0) -> Any:
    import onnxruntime_genai as og  # onnxruntime-genai: native runtime, only where it runs

    if max_length > model.context_length:
        raise ValueError(f"{max_length} tokens exceed the model context of {model.context_length}")
    params = og.GeneratorParams(model.og_model)
    # max_length sizes the shared KV buffer (past_present_share_buffer), so keep it tight.
    params.set_search_options(do_sample=False, max_length=max_length, min_length=min_length)
    return og.Generator(model.og_model, params)


def as_token_array(token_ids: list[int]) -> np.ndarray:
    return np.asarray(token_ids, dtype=np.int32)


def logits_for_tokens(model: OnnxModel, token_ids: list[int]) -> np.ndarray:
    """Next-token logits for every position of `token_ids`, shape (n_tokens, n_vocab), float32.

    Row i is the distribution for token i+1 given tokens 0..i. Each call starts a fresh
    generator (empty KV cache), so chunks are scored independently, like llama-perplexity.
    """
    if not token_ids:
        raise ValueError("token_ids is empty")
    gen = new_generator(model, len(token_ids))
    gen.append_tokens(as_token_array(token_ids))
    logits = np.asarray(gen.get_output("logits"), dtype=np.float32)
    if logits.shape != (1, len(token_ids), model.vocab_size):
        raise RuntimeError(f"unexpected logits shape {logits.shape} for {len(token_ids)} tokens")
    # Copy: the array may view a buffer the generator reuses; it must outlive `gen`.
    return logits[0].copy()


class GenaiModel:
    """One loaded GenAI folder as a `tasks.formats.base.LoadedModel`."""

    def __init__(self, folder: Path, *, threads: int) -> None:
        import onnxruntime_genai as og  # onnxruntime-genai: native runtime, only where it runs

        self.model = load_onnx_model(folder, threads=threads)
        self.n_vocab, self.load_s = self.model.vocab_size, self.model.load_s
        self.tokenizer = og.Tokenizer(self.model.og_model)

    def chunk_logits(self, token_ids: list[int], first: int) -> np.ndarray:
        return logits_for_tokens(self.model, token_ids)[first : len(token_ids) - 1]

    def time_prefill(self, token_ids: list[int]) -> float:
        # GenAI's graph computes logits for every appended position where llama.cpp computes only
        # the last: the lm_head share of prefill is counted here (see README, ONNX variants).
        gen = new_generator(self.model, len(token_ids))
        started = time.perf_counter()
        gen.append_tokens(as_token_array(token_ids))
        return time.perf_counter() - started

    def time_decode(self, n_tokens: int, context: list[int], token_ids: list[int]) -> float:
        # A GenAI generator cannot start empty: at least one context token; one untimed step first.
        context = context or token_ids[:1]
        total = len(context) + 1 + n_tokens
        gen = new_generator(self.model, total, min_length=total)  # min_length masks EOS: exactly n steps
        gen.append_tokens(as_token_array(context))
        gen.generate_next_token()
        started = time.perf_counter()
        for _ in range(n_tokens):
            gen.generate_next_token()
        return time.perf_counter() - started

    def time_first_token(self, token_ids: list[int]) -> float:
        gen = new_generator(self.model, len(token_ids) + 1)
        started = time.perf_counter()
        gen.append_tokens(as_token_array(token_ids))
        gen.generate_next_token()
        gen.get_next_tokens()
        return time.perf_counter() - started

    def chat_tokens(self, message: str) -> list[int]:
        folder = self.model.folder
        text = prompt_text(self.tokenizer, chat_template(folder), [{"role": "user", "content": message}],
                           bos=bos_text(folder))
        return [int(t) for t in self.tokenizer.encode(text)]

    def greedy(self, prompt_ids: list[int], max_tokens: int,
               done: Callable[[list[int]], bool] | None = None) -> list[int]:
        gen = new_generator(self.model, len(prompt_ids) + max_tokens)
        gen.append_tokens(as_token_array(prompt_ids))
        out: list[int] = []
        while not gen.is_done() and len(out) < max_tokens:
            gen.generate_next_token()
            out.append(int(gen.get_next_tokens()[0]))
            if self.is_end(out[-1]) or (done is not None and done(out)):
                break
        return out

    def is_end(self, token: int) -> bool:
        return token in self.model.eos_token_ids

    def detokenize(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(np.asarray(token_ids, dtype=np.int32)) if token_ids else ""

    def chat_template(self) -> str | None:
        return chat_template(self.model.folder)

    def special_texts(self) -> tuple[str, str]:
        config_file = self.model.folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return tuple(_token_text(config.get(name)) for name in ("bos_token", "eos_token"))

    def encode(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        # GenAI's encode always parses special-token texts (`special` is llama.cpp's choice; the prompts
        # that pass special=False hold none) and never adds BOS itself (bos_text says when it belongs).
        prefix = bos_text(self.model.folder) if add_bos else ""
        return [int(t) for t in self.tokenizer.encode(prefix + text)]


def chat_template(folder: Path) -> str | None:
    """The folder's chat template (chat_template.jinja, else tokenizer_config.json's), None when it has
    none: a pretrained model, which GenAI refuses to template ("Empty chat template")."""
    template_file, config_file = folder / "chat_template.jinja", folder / "tokenizer_config.json"
    if template_file.is_file():
        return template_file.read_text()
    template = json.loads(config_file.read_text()).get("chat_template") if config_file.is_file() else None
    return template if isinstance(template, str) and template else None


def _token_text(token: Any) -> str:
    """A tokenizer_config.json token entry's text: a string, or an AddedToken's dict ('' when unset)."""
    token = token.get("content") if isinstance(token, dict) else token
    return token if isinstance(token, str) else ""


def bos_text(folder: Path) -> str:
    """The BOS token's text when the tokenizer puts BOS first ('' otherwise). GenAI's `encode` does not
    run tokenizer.json's post-processor, so a template-less prompt would lose the BOS that a chat template
    writes itself and llama.cpp adds: Gemma 3 270M without it answered '???...' (fp32, exact logits)."""
    config_file, tokenizer_file = folder / "tokenizer_config.json", folder / "tokenizer.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    bos = _token_text(config.get("bos_token"))
    if not bos:
        return ""
    if config.get("add_bos_token"):
        return bos
    post = json.loads(tokenizer_file.read_text()).get("post_processor") if tokenizer_file.is_file() else None
    return bos if bos in (post or {}).get("special_tokens", {}) else ""


def prompt_text(tokenizer: Any, template: str | None, messages: list[dict], *, bos: str = "") -> str:
    """The prompt for `messages`: through the chat template, or, for a model without one, BOS and the
    messages' text itself, as the GGUF path and its prompt-only server render it."""
    if template is None:
        return bos + "\n\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    return tokenizer.apply_chat_template(json.dumps(messages), template_str=template, add_generation_prompt=True)


def load(path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int = 0, all_logits: bool = False) -> GenaiModel:
    """Measurements run on the CPU EP (n_gpu_layers is llama.cpp's knob; ignored here)."""
    return GenaiModel(Path(path), threads=threads)
