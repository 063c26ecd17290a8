"""The hf-torch runtime: transformers' AutoModelForCausalLM on the CPU (a LoadedModel)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class TorchModel:
    def __init__(self, folder: Path, *, threads: int, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        started = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
        self.load_s = time.perf_counter() - started
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.n_vocab = int(self.model.config.vocab_size)
        self.torch = torch

    def _forward(self, token_ids: list[int], past=None):
        with self.torch.no_grad():
            return self.model(self.torch.tensor([token_ids]), past_key_values=past, use_cache=True)

    def chunk_logits(self, token_ids: list[int], first: int) -> np.ndarray:
        return self._forward(token_ids).logits[0, first : len(token_ids) - 1].float().numpy()

    def time_prefill(self, token_ids: list[int]) -> float:
        started = time.perf_counter()
        self._forward(token_ids)
        return time.perf_counter() - started

    def time_decode(self, n_tokens: int, context: list[int], token_ids: list[int]) -> float:
        past = self._forward(context).past_key_values if context else None
        started = time.perf_counter()
        for token in token_ids[:n_tokens]:
            past = self._forward([token], past).past_key_values
        return time.perf_counter() - started

    def time_first_token(self, token_ids: list[int]) -> float:
        started = time.perf_counter()
        int(self._forward(token_ids).logits[0, -1].argmax())
        return time.perf_counter() - started

    def chat_tokens(self, message: str) -> list[int]:
        ids = self.tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                                 tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def greedy(self, prompt_ids: list[int], max_tokens: int) -> list[int]:
        out, past, ids = [], None, prompt_ids
        for _ in range(max_tokens):
            result = self._forward(ids, past)
            past, token = result.past_key_values, int(result.logits[0, -1].argmax())
            out.append(token)
            if self.is_end(token):
                break
            ids = [token]
        return out

    def is_end(self, token: int) -> bool:
        return token == self.tokenizer.eos_token_id

    def detokenize(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids)


def load(path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int = 0, all_logits: bool = False,
         dtype: str = "float32") -> TorchModel:
    return TorchModel(Path(path), threads=threads, dtype=dtype)
