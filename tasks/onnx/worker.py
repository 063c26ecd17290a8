"""ONNX measurement worker: `python -m tasks.onnx.worker REQUEST.json RESULT.json`.

The ONNX twin of `tasks.evaluate.worker`: a fresh process per measurement, so peak memory is the
model's own and a crash in native code fails one variant, not the flow.

Modes:
  quality  the f16 base GGUF (llama.cpp) and the ONNX folder side by side on the same token ids,
           chunk by chunk, through the same accumulators as GGUF variants: the figures compare.
  speed    load, prefill, decode (at depths too) and TTFT, llama-bench style; peak RSS.
  smoke    greedy answer to one chat prompt, to show that a packaged folder serves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tasks.evaluate import llama_runner
from tasks.evaluate.worker import peak_rss_bytes, serve
from tasks.evaluate.metrics import log_softmax, mean_sd, score_chunks, scored_positions
from tasks.onnx import runtime


def _chunk_ids(base, tokens: list[int], start: int, end: int) -> list[int]:
    """The ids llama_runner.chunk_logprobs feeds the base: BOS first when the vocab adds one."""
    import llama_cpp

    chunk = [int(t) for t in tokens[start:end]]
    adds_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(base.model))
    if base.token_bos() >= 0 and adds_bos:
        chunk[0] = base.token_bos()
    return chunk


def measure_quality(folder: Path, base_gguf: Path, tokens: list[int], *, n_ctx: int,
                    max_chunks: int | None, threads: int, n_gpu_layers: int) -> dict[str, float]:
    """Perplexity of the ONNX model and its divergence from the f16 base on the same chunks."""
    base = llama_runner.open_model(base_gguf, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers,
                                   logits_all=True)
    model = runtime.load_onnx_model(folder, threads=threads)
    if model.vocab_size != base.n_vocab():
        raise ValueError(f"ONNX vocabulary {model.vocab_size} != base GGUF vocabulary {base.n_vocab()}: "
                         "the two were not made from the same checkpoint")

    def onnx_logprobs(start: int, end: int) -> np.ndarray:
        logits = runtime.logits_for_tokens(model, _chunk_ids(base, tokens, start, end))
        return log_softmax(logits[scored_positions(end - start)])

    return score_chunks(
        tokens, n_ctx=n_ctx, max_chunks=max_chunks, variant=onnx_logprobs,
        base=lambda start, end: llama_runner.chunk_logprobs(base, tokens, start, end),
    )


def _repeat(run, repetitions: int) -> tuple[float, float]:
    run()  # warm-up: weight prepacking and allocator growth are not steady state
    return mean_sd([run() for _ in range(repetitions)])


def measure_speed(folder: Path, *, threads: int, prefill_tokens: int, decode_tokens: int,
                  repetitions: int, depths: list[int], ttft_prompt: list[int]) -> dict[str, float]:
    """The same figures as llama_runner.measure_speed, through ONNX Runtime GenAI."""
    model = runtime.load_onnx_model(folder, threads=threads)
    result: dict[str, float] = {"load_s": model.load_s, "threads": threads, "n_gpu_layers": 0}
    # Decode "from an empty cache" needs one prompt token here: a GenAI generator cannot start empty.
    runs = {
        "prefill_tps": lambda: prefill_tokens / runtime.time_prefill(model, prefill_tokens),
        "decode_tps": lambda: decode_tokens / runtime.time_decode(model, decode_tokens, prompt_tokens=1),
        "ttft_ms": lambda: runtime.time_first_token(model, ttft_prompt) * 1000.0,
    }
    for depth in depths:
        runs[f"decode_tps_d{depth}"] = lambda d=depth: decode_tokens / runtime.time_decode(
            model, decode_tokens, prompt_tokens=max(1, d))
    for name, run in runs.items():
        result[name], result[f"{name}_sd"] = _repeat(run, repetitions)
    return result


def smoke_answer(folder: Path, prompt: str, *, max_new_tokens: int, threads: int) -> dict:
    """Greedy answer to `prompt` wrapped in the folder's own chat template."""
    import onnxruntime_genai as og

    model = runtime.load_onnx_model(folder, threads=threads)
    tokenizer = og.Tokenizer(model.og_model)
    template_file = folder / "chat_template.jinja"
    messages = json.dumps([{"role": "user", "content": prompt}])
    # Without template_str GenAI reads tokenizer_config.json's template (absent in newer exports).
    template = template_file.read_text() if template_file.is_file() else None
    text = tokenizer.apply_chat_template(messages, template_str=template, add_generation_prompt=True)
    answer = runtime.greedy_generate(model, [int(t) for t in tokenizer.encode(text)], max_new_tokens)
    return {"prompt": prompt, "answer": tokenizer.decode(answer), "answer_tokens": len(answer)}


def run_request(request: dict) -> dict:
    folder, threads = Path(request["model"]), request.get("threads", 1)
    if request["mode"] == "quality":
        tokens = json.loads(Path(request["tokens_file"]).read_text())["tokens"]
        return measure_quality(folder, Path(request["base"]), tokens, n_ctx=request["n_ctx"],
                               max_chunks=request.get("max_chunks"), threads=threads,
                               n_gpu_layers=request.get("n_gpu_layers", 0))
    if request["mode"] == "speed":
        result = measure_speed(folder, threads=threads, prefill_tokens=request["prefill_tokens"],
                               decode_tokens=request["decode_tokens"], repetitions=request["repetitions"],
                               depths=request.get("depths", []), ttft_prompt=request["ttft_prompt"])
        result["peak_rss_bytes"] = peak_rss_bytes()
        return result
    if request["mode"] == "smoke":
        return smoke_answer(folder, request["prompt"], max_new_tokens=request["max_new_tokens"], threads=threads)
    raise ValueError(f"unknown mode {request['mode']!r}")


if __name__ == "__main__":
    serve(run_request, Path(sys.argv[1]), Path(sys.argv[2]))
