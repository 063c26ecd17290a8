"""Step 4, evaluate: the measurement protocol (this config) and its cores (tasks.evaluate.measure)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import Annotated

from tasks.core.resources import config_dir
from tasks.evaluate.corpus import BuiltinCorpus, CorpusConfig
from tasks.evaluate.domains import DOMAIN_NAME, Domain, domain_problems
from tasks.evaluate.humaneval.step import HumanEvalConfig


class EvalConfig(BaseModel):
    """The measurement protocol; every field is recorded with the results."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    corpus: CorpusConfig = Field(default_factory=BuiltinCorpus, description="Evaluation text.")
    corpus_domain: Annotated[str, StringConstraints(pattern=DOMAIN_NAME)] = Field(
        "prose", description="The main text's domain name, beside `domains` in cards and tables.")
    domains: dict[Annotated[str, StringConstraints(pattern=DOMAIN_NAME)], Domain] | None = Field(
        None, description="More evaluation texts by name (code, chat, ...), scored in the same reference pass; "
                          "each adds `<name>/<figure>` figures (tasks.evaluate.domains). null: the main text only.",
    )
    n_ctx: int = Field(512, ge=16, description="Perplexity chunk length (llama.cpp tables use 512).")
    max_chunks: int | None = Field(
        24, ge=1, description="Chunks scored (None = all); each scores n_ctx/2 - 1 tokens.",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads (default: physical cores, as llama-bench).")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to a GPU build (-1 = all).")
    prefill_tokens: int = Field(512, ge=1, description="Prompt length of the prefill test (pp512).")
    decode_tokens: int = Field(128, ge=1, description="Generated tokens of the decode test (tg128).")
    repetitions: int = Field(3, ge=3, description="Timed runs after one warm-up; mean and sd reported.")
    depths: list[int] = Field(default_factory=list, description="Also time decode after this many context tokens.")
    ttft_prompt_tokens: int = Field(64, ge=1, description="Prompt length for time to first token.")
    speed_anchor: bool = Field(
        True, description="Time the f16 base beside each of a variant's speed runs (ABBA order, its own process, "
        "the host's physical cores) and report each speed figure per anchor too: what speed verdicts judge, "
        "since host drift moves both alike. Roughly doubles a variant's speed time.",
    )
    humaneval: HumanEvalConfig | None = Field(
        None, description="Greedy HumanEval pass@1 of every variant (GGUF and ONNX), its flips against the f16 "
                          "(tasks.evaluate.humaneval.step); null: not run. Minutes per problem on a 1.5B on CPU.",
    )
    timeout_s: int = Field(3600, ge=10, description="A measurement worker running longer is stopped.")
    prompt_suite: str | None = Field(
        "default", description="Prompt suite: a name under configs/prompts/, a YAML path, or null to skip.",
    )


    def corpora(self) -> list:
        """Every evaluation text: the main one, then each domain's."""
        return [self.corpus, *(d.text for d in (self.domains or {}).values())]

    def reference_chunks(self) -> int:
        """Chunks of the reference pass (what its memory, disk and time scale with): the main text's
        (24 where it reads all: a planning figure) and every domain's."""
        return (self.max_chunks or 24) + sum(d.max_chunks for d in (self.domains or {}).values())

    @model_validator(mode="after")
    def _domains_valid(self) -> "EvalConfig":
        if problems := domain_problems(self.domains or {}, self.corpus_domain):
            raise ValueError("; ".join(problems))
        return self


def prompt_suite_file(config: EvalConfig) -> Path | None:
    """The prompt suite YAML a config names (None when the suite is switched off)."""
    if config.prompt_suite is None:
        return None
    if "/" in config.prompt_suite or config.prompt_suite.endswith(".yaml"):
        return Path(config.prompt_suite)
    return config_dir() / "prompts" / f"{config.prompt_suite}.yaml"


def default_threads() -> int:
    """Physical cores, as llama-bench and llama-perplexity default to."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
