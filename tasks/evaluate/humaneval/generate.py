"""Greedy HumanEval completions from any format's loaded variant (llama.cpp for GGUF, ONNX Runtime GenAI
for ONNX): the same prompt text, each tokenized by the variant's own tokenizer.

Prompt (instruct models, a chat template in the model): EvalPlus's own codegen prompt for chat models.
It is *not* the prompt behind the Qwen2.5-Coder report's instruct figures (arXiv 2409.12186): the
Qwen2.5-Coder repository's qwencoder-eval/instruct/eval_plus (model.py, class ChatML; read at commit
d5ead97) writes its own ChatML text, system "You are an intelligent programming assistant to produce
Python algorithmic solutions", user "Can you complete the following Python function?" and the prompt in
a ```python block, the assistant pre-filled with "```python", stops "\nif __name__", "\ndef main(",
"\nprint(", "\n#", "\n```", then evalplus.sanitize. Figures from the two prompts can differ. Here the user
turn is

    Please provide a self-contained Python script that solves the following problem in a markdown code block:
    ```
    <the problem's prompt, stripped>
    ```

and the assistant turn is *pre-filled* with

    Below is a Python script with a self-contained function that solves the problem and passes corresponding tests:
    ```python

both rendered through the model's own chat template (EvalPlus renders the two turns and cuts the text
at a marker placed where the code goes). Greedy decoding, one sample: pass@1.

Decoding only: each problem's generated text is kept raw (tasks.evaluate.humaneval.kept), and the
program run is made from it by tasks.evaluate.humaneval.extract on the flow's side. So a change to
extraction re-scores the kept generations without decoding them again, and the kept folder's key
(this module's code) does not move with it.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from tasks.evaluate.humaneval.kept import Generation, KeptCompletions
from tasks.evaluate.humaneval.problems import Problem
from tasks.formats.base import LoadedModel

INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
               "code block:")
RESPONSE = ("Below is a Python script with a self-contained function that solves the problem and passes "
            "corresponding tests:")
SPLITTER = "-[[]]-slmforge-code-goes-here-[[]]-"


class GenerateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(512, ge=1, description="Longest completion; EvalPlus allows more, 512 fits HumanEval's "
                            "solutions with room to spare.")
    n_ctx: int = Field(2048, ge=256, description="Context: the longest HumanEval prompt plus max_tokens.")


def chat_prompt(problem: Problem, template: str, *, eos: str, bos: str) -> tuple[str, bool]:
    """(the rendered prompt ending inside the assistant's code block, whether it holds BOS already)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # llama.cpp's native library: only to generate

    user = f"{INSTRUCTION}\n```\n{problem.prompt.strip()}\n```\n"
    assistant = f"{RESPONSE}\n```python\n{SPLITTER}\n```\n"
    rendered = Jinja2ChatFormatter(template, eos, bos)(
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])
    if SPLITTER not in rendered.prompt:
        raise ValueError("the chat template dropped the assistant turn; cannot pre-fill the response")
    return rendered.prompt.split(SPLITTER)[0], bool(rendered.added_special)


def prompt_text(model: LoadedModel, problem: Problem) -> tuple[str, bool, bool]:
    """(the prompt text, whether it holds BOS already, whether it went through a chat template): the
    same text for every format of one model."""
    template = model.chat_template()
    if not template:
        return problem.prompt, False, False
    bos, eos = model.special_texts()
    prompt, has_bos = chat_prompt(problem, template, eos=eos, bos=bos)
    return prompt, has_bos, True


def prompt_ids(model: LoadedModel, problem: Problem) -> tuple[list[int], bool]:
    """(the prompt's token ids, whether it is a chat prompt), tokenized by the variant's own tokenizer,
    as it is deployed. The ids can differ between formats where their tokenizers do: llama.cpp splits
    some whitespace runs otherwise than Hugging Face's tokenizer (SmolLM2: "\n    0" is one token
    there, two in GenAI and in transformers), so a flip between formats may be the tokenizer's."""
    text, has_bos, chat = prompt_text(model, problem)
    return model.encode(text, add_bos=not has_bos, special=chat), chat


def _closes_the_code_block(model: LoadedModel) -> Callable[[list[int]], bool]:
    """True once the generated text closes the pre-filled code block: extraction cuts there, so what an
    instruct model writes after it (an explanation, a usage example) is never used, and decoding it
    costs as much per token as the code did."""
    def done(generated: list[int]) -> bool:
        # Only a token that may complete a fence is worth the detokenizing of the whole text so far.
        return "`" in model.detokenize(generated[-1:]) and "```" in model.detokenize(generated)
    return done


def generate_all(load: Callable[[], LoadedModel], problems: list[Problem], config: GenerateConfig | None = None,
                 *, kept: KeptCompletions | None = None) -> tuple[dict[str, Generation], int]:
    """({task_id: what the variant generated}, how many were decoded now) by greedy decoding of a variant,
    any format, loaded by `load` when the first problem is left to decode. With `kept`, a problem already
    kept is not decoded again and each new generation is kept as soon as it is decoded (a stopped run
    resumes there; a finished one loads no model)."""
    from tasks.evaluate.process import report_progress  # a worker's progress lines

    config = config or GenerateConfig()
    generations: dict[str, Generation] = {}
    decoded, model = 0, None
    for problem in problems:
        if kept is not None and (generation := kept.get(problem.task_id)) is not None:
            generations[problem.task_id] = generation
        else:
            if model is None:
                model = load()
            generations[problem.task_id] = _generate(model, problem, config)
            decoded += 1
            if kept is not None:
                kept.put(problem.task_id, generations[problem.task_id])
        report_progress("humaneval problems", len(generations), len(problems))
    return generations, decoded


def _generate(model: LoadedModel, problem: Problem, config: GenerateConfig) -> Generation:
    ids, chat = prompt_ids(model, problem)
    budget = min(config.max_tokens, config.n_ctx - len(ids))
    if budget <= 0:
        raise ValueError(f"{problem.task_id}: its prompt has {len(ids)} tokens, n_ctx is {config.n_ctx}; "
                         "raise n_ctx")
    done = _closes_the_code_block(model) if chat else None
    return Generation(text=model.detokenize([t for t in model.greedy(ids, budget, done) if not model.is_end(t)]),
                      chat=chat)
