"""Score completions: each problem's program in the sandbox, then pass@1 (tasks.evaluate.humaneval.score)."""

from __future__ import annotations

from tasks.evaluate.humaneval.problems import Problem, program_text
from tasks.evaluate.humaneval.sandbox import RunResult, SandboxConfig, run_program
from tasks.evaluate.humaneval.score import PassAtOne, pass_at_1


def run_completions(problems: list[Problem], completions: dict[str, str],
                    config: SandboxConfig | None = None) -> dict[str, RunResult]:
    """{task_id: result}; a problem without a completion is run with an empty one (and fails)."""
    return {p.task_id: run_program(program_text(p, completions.get(p.task_id, "")), config) for p in problems}


def score_completions(problems: list[Problem], completions: dict[str, str],
                      config: SandboxConfig | None = None) -> tuple[PassAtOne, dict[str, RunResult]]:
    results = run_completions(problems, completions, config)
    return pass_at_1({t: r.passed for t, r in results.items()}), results
