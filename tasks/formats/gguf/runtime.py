"""A GGUF variant inside a measurement worker, through llama-cpp-python.

Implements `tasks.formats.base.LoadedModel`. Speed follows llama-bench: prefill = one batch from an
empty cache with only the last logits computed; decode = single-token steps from an empty cache
(or after untimed context, as `llama-bench -d`); the shared protocol (tasks.evaluate.speed) adds
the warm-up and repetitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def open_llama(path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int, logits_all: bool, use_mmap: bool = True):
    """A llama.cpp model with one context; the batch holds a whole chunk, as llama-perplexity."""
    from llama_cpp import Llama  # llama.cpp's binding: native library, only where a model runs

    return Llama(
        model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(n_ctx, 512),
        n_threads=threads, n_threads_batch=threads, n_gpu_layers=n_gpu_layers,
        logits_all=logits_all, verbose=False, use_mmap=use_mmap,
        # llama-perplexity and llama-bench default to flash_attn=auto, which resolves to on for
        # the CPU; llama-cpp-python's Llama defaults to off. Measured on SmolLM2-135M Q8_0, 1
        # thread: off costs 15 % of pp512 and 5 % of tg128, so the tools' setting is matched.
        flash_attn=True,
    )


class GgufModel:
    """One loaded GGUF (see LoadedModel for the contract of each method)."""

    def __init__(self, path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int, all_logits: bool) -> None:
        started = time.perf_counter()
        # logits_all stays off even for quality passes: chunk_logits asks llama.cpp for the rows it needs.
        # Quality passes read the file instead of mapping it: llama.cpp repacks K-quants and Q8_0 for
        # its CPU kernels, and with mmap the touched file pages stay resident beside the repacked
        # copy (a 1.0 GB Q4_K_M of the 1.7B shape peaked at 1.95 GB mapped, 1.23 GB read). Timed
        # runs keep mmap on, as llama-bench does, so speed figures compare with its.
        self.llm = open_llama(path, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, logits_all=False,
                              use_mmap=not all_logits)
        self.load_s = time.perf_counter() - started
        self.n_vocab = self.llm.n_vocab()

    def chunk_logits(self, token_ids: list[int], first: int) -> np.ndarray:
        """One decode of the whole chunk with outputs requested only for the scored positions, as
        llama-perplexity does: the lm_head runs on half the chunk, and no n_ctx x n_vocab copy is made
        (Llama.eval with logits_all would copy every row into `scores`). Returns a view of
        llama.cpp's output buffer, valid until the next decode: the caller consumes it at once."""
        llm, n = self.llm, len(token_ids)
        if n > llm.n_batch:
            raise ValueError(f"a chunk of {n} tokens exceeds the batch of {llm.n_batch}")
        llm._ctx.kv_cache_clear()  # noqa: SLF001 - llama-cpp-python is pinned (0.3.36)
        batch = llm._batch.batch  # noqa: SLF001
        batch.n_tokens = n
        for i, token in enumerate(token_ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = first <= i < n - 1
        llm._ctx.decode(llm._batch)  # noqa: SLF001
        llm.n_tokens = 0  # the high-level API's view of the cache: empty again
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n - 1 - first, self.n_vocab))  # noqa: SLF001

    def time_prefill(self, token_ids: list[int]) -> float:
        self.llm.reset()
        started = time.perf_counter()
        self.llm.eval(token_ids)
        return time.perf_counter() - started

    def time_decode(self, n_tokens: int, context: list[int], token_ids: list[int]) -> float:
        self.llm.reset()
        if context:
            self.llm.eval(context)
        started = time.perf_counter()
        for token in token_ids[:n_tokens]:
            self.llm.eval([token])
        return time.perf_counter() - started

    def time_first_token(self, token_ids: list[int]) -> float:
        self.llm.reset()
        started = time.perf_counter()
        self.llm.eval(token_ids)
        self.llm.sample(temp=0.0)  # the first token exists once it is sampled
        return time.perf_counter() - started

    def chat_tokens(self, message: str) -> list[int]:
        """Rendered as create_chat_completion does (Jinja2ChatFormatter on the GGUF's template,
        special tokens parsed, BOS only where the template writes it)."""
        # llama.cpp's binding: native library, only where a model runs
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return self.llm.tokenize(message.encode("utf-8"), add_bos=True, special=False)
        formatter = Jinja2ChatFormatter(template, self._text(self.llm.token_eos()), self._text(self.llm.token_bos()))
        rendered = formatter(messages=[{"role": "user", "content": message}])
        return self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def greedy(self, prompt_ids: list[int], max_tokens: int,
               done: Callable[[list[int]], bool] | None = None) -> list[int]:
        # Argmax on the raw logits rather than a sampler chain: nothing (penalties, min-p) can make
        # two runs differ except the model's own numbers.
        import llama_cpp

        self.llm.reset()
        self.llm.eval(prompt_ids)
        generated: list[int] = []
        for _ in range(max_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
            token = int(np.argmax(logits))
            generated.append(token)
            if self.is_end(token) or len(prompt_ids) + len(generated) >= self.llm.n_ctx():
                break
            if done is not None and done(generated):
                break
            self.llm.eval([token])
        return generated

    def is_end(self, token: int) -> bool:
        import llama_cpp  # llama.cpp's binding: native library, only where a model runs

        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self.llm.model), token))

    def detokenize(self, token_ids: list[int]) -> str:
        return self.llm.detokenize(token_ids).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        return self.llm.metadata.get("tokenizer.chat_template") or None

    def special_texts(self) -> tuple[str, str]:
        return self._text(self.llm.token_bos()), self._text(self.llm.token_eos())

    def encode(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        # add_bos: llama.cpp adds BOS only where the vocabulary asks for it (tokenizer.ggml.add_bos_token)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def _text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


def load(path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int = 0, all_logits: bool = False) -> GgufModel:
    return GgufModel(Path(path), n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, all_logits=all_logits)


def tokenize_text(path: Path, text: str) -> dict:
    """Tokens as llama-perplexity makes them (add_special=true: BOS only if the vocab wants it),
    and the BOS id to put first in every chunk (None when the vocab adds none)."""
    import llama_cpp  # llama.cpp's binding: native library, only where a model runs
    from llama_cpp import Llama

    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    adds_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(vocab.model))
    bos = vocab.token_bos() if adds_bos and vocab.token_bos() >= 0 else None
    return {"tokens": vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False), "bos": bos,
            "n_vocab": vocab.n_vocab()}


def tokenize_domain(path: Path, material: dict) -> dict:
    """An evaluation domain's token ids (tasks.evaluate.domains): a text as `tokenize_text` makes it;
    conversations rendered one by one through the GGUF's chat template, as create_chat_completion
    renders a request (special tokens parsed, BOS only where the template does not write it), and
    joined. {"skipped": why} for a chat domain of a model without a template."""
    from llama_cpp import Llama  # llama.cpp's binding: native library, only where a model runs
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if material["render"] == "text":
        return {"tokens": tokenize_text(path, material["text"])["tokens"]}
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    template = vocab.metadata.get("tokenizer.chat_template")
    if not template:
        return {"skipped": "the model has no chat template (tokenizer.chat_template): nothing to render the "
                           "conversations through"}

    def token_text(token: int) -> str:
        return vocab.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    formatter = Jinja2ChatFormatter(template, token_text(vocab.token_eos()), token_text(vocab.token_bos()),
                                    add_generation_prompt=False)
    tokens: list[int] = []
    for turns in material["conversations"]:
        messages = [{"role": ("user", "assistant")[i % 2], "content": turn} for i, turn in enumerate(turns)]
        rendered = formatter(messages=messages)
        tokens += vocab.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
    return {"tokens": tokens}
