"""Prompt suite: short questions with checkable answers, generated greedily through the chat template.

Perplexity and KLD say how far a quant's distributions moved; this says whether it still answers,
and how much of the f16 base's greedy output it reproduces (golden agreement). The scoring core
(`score_answer`, `golden_agreement`) is pure; `run_prompt_suite` runs
inside a measurement worker on any format's loaded model (tasks.formats.base.LoadedModel).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.core.config_errors import describe
from tasks.core.errors import ConfigError
from tasks.core.resources import config_dir
from tasks.evaluate.process import report_progress

DEFAULT_SUITE = config_dir() / "prompts" / "default.yaml"


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
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    try:
        return PromptSuite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [describe(error, PromptSuite) for error in exc.errors()]) from None


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


def run_prompt_suite(model, prompts: list[Prompt], max_tokens: int) -> list[dict]:
    """One row per prompt: id, kind, output text, generated token ids (end token kept), correct."""
    rows = []
    for done, prompt in enumerate(prompts, start=1):
        tokens = model.greedy(model.chat_tokens(prompt.prompt), max_tokens)
        output = model.detokenize([t for t in tokens if not model.is_end(t)])
        rows.append({
            "id": prompt.id, "kind": prompt.kind, "output": output, "tokens": tokens,
            "correct": score_answer(output, prompt.expect),
        })
        report_progress("prompts", done, len(prompts))
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


def run_prompts_request(model, request: dict) -> dict:
    """The worker's "prompts" mode: answers, token ids and task_score (golden_agreement is derived at
    the flow's edge, once the base's answers are known). Request keys: prompts_file, max_tokens."""
    suite = load_prompt_suite(Path(request.get("prompts_file") or DEFAULT_SUITE))
    max_tokens = request.get("max_tokens") or suite.max_tokens
    rows = run_prompt_suite(model, suite.prompts, max_tokens)
    return {"prompts": rows, "task_score": task_score(rows), "n_prompts": len(rows), "max_tokens": max_tokens}
