"""Prompt suite: short questions with checkable answers, generated greedily through the chat template.

Perplexity and KLD say how far a quant's distributions moved; this says whether it still answers,
and how much of the f16 base's greedy output it reproduces (golden agreement). The scoring core
(`score_answer`, `golden_agreement`) is pure; `run_prompt_suite` needs a llama_cpp.Llama and runs
inside an evaluation worker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import ConfigError

DEFAULT_SUITE = Path(__file__).resolve().parents[2] / "configs" / "prompts" / "default.yaml"


class Expect(BaseModel):
    """The checkable answer: exactly one of `exact` or `regex`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    exact: str | None = Field(None, min_length=1, description=(
        "The whole answer, compared case-insensitively after trimming spaces, quotes and a final "
        "full stop (use `regex` where case matters)."))
    regex: str | None = Field(None, min_length=1, description="Python regex searched anywhere in the answer.")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Expect:
        if (self.exact is None) == (self.regex is None):
            raise ValueError("give exactly one of `exact` or `regex`")
        return self


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable name, used in result rows.")
    kind: Literal["arithmetic", "code", "reasoning", "knowledge"] = Field(description="Task family.")
    prompt: str = Field(min_length=1, description="The user message.")
    expect: Expect = Field(description="How the answer is checked.")


class PromptSuite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_tokens: int = Field(48, ge=1, le=1024, description="Greedy tokens generated per prompt at most.")
    prompts: list[Prompt] = Field(min_length=1, description="The questions.")

    @model_validator(mode="after")
    def _unique_ids(self) -> PromptSuite:
        ids = [p.id for p in self.prompts]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"prompt ids must be unique; repeated: {', '.join(duplicates)}")
        return self


def load_prompt_suite(path: Path = DEFAULT_SUITE) -> PromptSuite:
    """Read and validate a prompt suite; ConfigError lists every problem at once."""
    from tasks.config import _describe  # the pipeline config's wording for validation problems

    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    try:
        return PromptSuite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [_describe(error) for error in exc.errors()]) from None


_TRIM = " \t\r\n\"'`."


def score_answer(output: str, expect: Expect) -> bool:
    """True when `output` carries the expected answer (see `Expect` for the two rules)."""
    if expect.regex is not None:
        return re.search(expect.regex, output) is not None
    return output.strip(_TRIM).casefold() == expect.exact.strip(_TRIM).casefold()


def golden_agreement(variant_tokens: list[int], base_tokens: list[int]) -> float:
    """Share of the base's greedy tokens the variant reproduces before their first divergence.

    Chosen over a position-by-position match rate: once greedy outputs diverge, each model
    continues from a different prefix, so later positions compare unrelated continuations (a
    single inserted token would zero a positional rate while the text stays the same). The
    prefix share is what "reproduces the base's answer" means. Token lists include the stop
    token when one was generated, so stopping early or late counts as a divergence. An empty
    base output is matched only by an empty variant output.
    """
    if not base_tokens:
        return 1.0 if not variant_tokens else 0.0
    same = 0
    for variant_token, base_token in zip(variant_tokens, base_tokens):
        if variant_token != base_token:
            break
        same += 1
    return same / len(base_tokens)


def chat_prompt_tokens(llm, user_message: str) -> list[int]:
    """The model's own chat template applied to one user turn, with the generation prompt.

    Rendered as create_chat_completion does (Jinja2ChatFormatter on the GGUF's template, special
    tokens parsed, BOS only where the template writes it). A GGUF without a template gets the
    bare message, tokenized like any prompt.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return llm.tokenize(user_message.encode("utf-8"), add_bos=True, special=False)

    def token_text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    formatter = Jinja2ChatFormatter(template, token_text(llm.token_eos()), token_text(llm.token_bos()))
    rendered = formatter(messages=[{"role": "user", "content": user_message}])
    return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)


def greedy_generate(llm, prompt_tokens: list[int], max_tokens: int) -> list[int]:
    """Argmax decoding from an empty cache; the end-of-generation token is kept when reached.

    Argmax on the raw logits rather than a sampler chain: nothing (penalties, min-p) can make
    two runs differ except the model's own numbers.
    """
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()
    llm.reset()
    llm.eval(prompt_tokens)
    generated: list[int] = []
    for _ in range(max_tokens):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        token = int(np.argmax(logits))
        generated.append(token)
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(prompt_tokens) + len(generated) >= llm.n_ctx():
            break
        llm.eval([token])
    return generated


def run_prompt_suite(llm, prompts: list[Prompt], max_tokens: int) -> list[dict]:
    """One row per prompt: id, kind, output text, generated token ids, correct."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    rows = []
    for prompt in prompts:
        tokens = greedy_generate(llm, chat_prompt_tokens(llm, prompt.prompt), max_tokens)
        text_tokens = [t for t in tokens if not llama_cpp.llama_vocab_is_eog(vocab, t)]
        output = llm.detokenize(text_tokens).decode("utf-8", errors="replace")
        rows.append({
            "id": prompt.id, "kind": prompt.kind, "output": output, "tokens": tokens,
            "correct": score_answer(output, prompt.expect),
        })
    return rows


def task_score(rows: list[dict]) -> float:
    """Fraction of prompts answered correctly."""
    return sum(bool(row["correct"]) for row in rows) / len(rows) if rows else 0.0


def mean_golden_agreement(rows: list[dict], base_rows: list[dict]) -> float:
    """Golden agreement averaged over the prompts both runs answered (matched by id)."""
    base = {row["id"]: row["tokens"] for row in base_rows}
    shared = [row for row in rows if row["id"] in base]
    if not shared:
        raise ValueError("no prompt id is shared with the base run; were they run on the same suite?")
    return sum(golden_agreement(row["tokens"], base[row["id"]]) for row in shared) / len(shared)


def run_prompts_request(model: Path, request: dict, *, threads: int, n_gpu_layers: int) -> dict:
    """The worker's "prompts" mode: answers, token ids, task_score (and golden_agreement when the
    base's rows are given as `base_rows`). Request keys: prompts_file, max_tokens, n_ctx."""
    from tasks.evaluate.llama_runner import open_model

    suite = load_prompt_suite(Path(request.get("prompts_file") or DEFAULT_SUITE))
    max_tokens = request.get("max_tokens") or suite.max_tokens
    llm = open_model(model, n_ctx=request.get("n_ctx", 512), threads=threads,
                     n_gpu_layers=n_gpu_layers, logits_all=False)
    rows = run_prompt_suite(llm, suite.prompts, max_tokens)
    result: dict = {"prompts": rows, "task_score": task_score(rows), "n_prompts": len(rows),
                    "max_tokens": max_tokens}
    if request.get("base_rows"):
        result["golden_agreement"] = mean_golden_agreement(rows, request["base_rows"])
    return result
