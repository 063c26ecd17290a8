"""Measurement worker: `python -m tasks.evaluate.worker REQUEST.json RESULT.json`.

One fresh process per measurement, for any format: the request names the format's runtime
module (`tasks.formats.base.LoadedModel` via its `load()`), so peak memory is that variant's own
and a crash in native code fails one variant, not the flow. Modes:

  tokenize   the evaluation text -> token ids with the reference's tokenizer
  reference  the f16 base over the chunks, stored encoded (tasks.evaluate.reference)
  quality    a variant over the same chunks, scored against the stored reference
  speed      llama-bench-style timings (each burst beside the f16 anchor's when the request names
             one), then the prompt suite; peak RSS of this process (the anchor's is not in it)
  humaneval  greedy HumanEval generations (any format), each kept in the store as it is decoded
             (tasks.evaluate.humaneval.kept), extracted and scored in the sandbox by the caller
  smoke      one greedy chat answer from a packaged folder
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

from tasks.evaluate import quality
from tasks.evaluate.anchor import AnchorRequest, SpeedAnchor
from tasks.evaluate.process import exit_with_parent, peak_rss_bytes
from tasks.evaluate.prompt_suite import run_prompts_request
from tasks.evaluate.speed import measure_speed


def run_request(request: dict) -> dict:
    runtime = importlib.import_module(request["runtime"])
    model_path, mode, threads = Path(request["model"]), request["mode"], request.get("threads", 1)
    if mode == "tokenize":
        result = runtime.tokenize_text(model_path, Path(request["text_file"]).read_text(encoding="utf-8"))
        if request.get("domains_file"):  # evaluation domains beside the main text (tasks.evaluate.domains)
            domains = json.loads(Path(request["domains_file"]).read_text(encoding="utf-8"))
            result["domains"] = {name: runtime.tokenize_domain(model_path, material)
                                 for name, material in domains.items()}
        return result
    tokens = json.loads(Path(request["tokens_file"]).read_text()) if request.get("tokens_file") else None
    common = {"threads": threads, "n_gpu_layers": request.get("n_gpu_layers", 0)}
    if mode in ("reference", "quality"):
        model = runtime.load(model_path, n_ctx=request["n_ctx"], all_logits=True, **common)
        if mode == "reference":
            return quality.reference_pass(model, tokens, n_ctx=request["n_ctx"], max_chunks=request.get("max_chunks"),
                                          out_dir=Path(request["out_dir"]),
                                          domain_chunks=request.get("domain_chunks") or {})
        return quality.score_against_reference(model, tokens, Path(request["reference_dir"]))
    if mode == "speed":
        return _speed_and_prompts(runtime, model_path, request, tokens, common)
    if mode == "humaneval":  # greedy generations only: extracted and run in the sandbox on the flow's side
        from tasks.evaluate.humaneval.generate import GenerateConfig, generate_all
        from tasks.evaluate.humaneval.kept import KeptCompletions
        from tasks.evaluate.humaneval.problems import ProblemSubset, load_problems

        problems = load_problems(ProblemSubset(**request["problems"]))
        config = GenerateConfig(max_tokens=request["max_tokens"], n_ctx=request["n_ctx"])
        kept = KeptCompletions(Path(request["kept_dir"])) if request.get("kept_dir") else None
        generations, decoded = generate_all(lambda: runtime.load(model_path, n_ctx=config.n_ctx, **common),
                                            problems, config, kept=kept)
        return {"generations": {task: g._asdict() for task, g in generations.items()}, "decoded": decoded}
    if mode == "smoke":
        model = runtime.load(model_path, n_ctx=1024, **common)
        answer = model.greedy(model.chat_tokens(request["prompt"]), request["max_new_tokens"])
        text_tokens = [t for t in answer if not model.is_end(t)]
        return {"prompt": request["prompt"], "answer": model.detokenize(text_tokens), "answer_tokens": len(text_tokens)}
    raise ValueError(f"unknown mode {mode!r}")


def _speed_and_prompts(runtime, model_path: Path, request: dict, tokens: dict, common: dict) -> dict:
    ttft_prompt = tokens["tokens"][: request["ttft_prompt_tokens"]]
    n_ctx = max([request["prefill_tokens"], len(ttft_prompt) + 1, 1024]
                + [d + request["decode_tokens"] + 2 for d in request["depths"]]) + 8
    model = runtime.load(model_path, n_ctx=n_ctx, **common)
    protocol = {"prefill_tokens": request["prefill_tokens"], "decode_tokens": request["decode_tokens"],
                "depths": request["depths"], "ttft_prompt": ttft_prompt}
    with contextlib.ExitStack() as stack:
        anchor = None
        if request.get("anchor"):  # the f16 base, timed beside each burst in its own process
            anchor = stack.enter_context(SpeedAnchor(AnchorRequest(
                **request["anchor"], n_ctx=n_ctx, n_gpu_layers=common["n_gpu_layers"], **protocol)))
        result = measure_speed(model, repetitions=request["repetitions"], anchor=anchor, **protocol)
    result.update(threads=common["threads"], n_gpu_layers=common["n_gpu_layers"])
    if request.get("prompts_file"):  # greedy answers: task_score now, golden_agreement at the flow's edge
        result.update(run_prompts_request(model, request))
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def serve(request_path: Path, result_path: Path) -> None:
    """Answer one request file; the result file appears only when complete."""
    result = run_request(json.loads(request_path.read_text()))
    if isinstance(result, dict) and "peak_rss_bytes" not in result:
        result["worker_peak_rss_bytes"] = peak_rss_bytes()
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)


if __name__ == "__main__":
    exit_with_parent()
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
