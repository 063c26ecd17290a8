"""HumanEval as part of a variant's measurement (`evaluate.humaneval`): greedy completions in the
measurement worker, each program run in the sandbox on the flow's side, then pass@1 with its Wilson
interval; against the f16 base, the flips (problems lost and gained) with Newcombe's paired interval
and the exact McNemar test (tasks.evaluate.humaneval.score).

Each problem's result is kept in problem order (PROBLEM_SERIES, logged as the metric history
`problem_humaneval_pass`), so two variants measured under the same protocol pair problem by problem.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tasks.evaluate.humaneval.problems import ProblemSubset
from tasks.evaluate.humaneval.sandbox import RunResult, SandboxConfig
from tasks.evaluate.humaneval.score import paired, pass_at_1

PROBLEM_SERIES = "problem_series"  # {"humaneval_pass": [1.0, 0.0, ...]}, problem order
PROBLEM_METRIC_PREFIX = "problem_"
TASK_IDS = "humaneval_task_ids"  # the problems' ids in that order (kept with the figures, not logged as a metric)
FLIP_TAGS = ("humaneval_lost_ids", "humaneval_gained_ids")  # logged as tags slmforge.<name>: which problems flipped


class HumanEvalConfig(BaseModel):
    """Greedy pass@1 on HumanEval, every variant of every format (tasks.evaluate.humaneval.generate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    problems: ProblemSubset = Field(default_factory=ProblemSubset,
                                    description="Which problems: all 164 (the study), `count: N` or `task_ids`.")
    max_tokens: int = Field(512, ge=1, description="Longest completion.")
    n_ctx: int = Field(2048, ge=256, description="Context: the longest prompt plus max_tokens.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits of each program's run.")


def humaneval_figures(task_ids: list[str], results: dict[str, RunResult]) -> dict:
    """pass@1 and its interval, and each problem's result in order."""
    score = pass_at_1({task: results[task].passed for task in task_ids})
    return {"humaneval_pass_at_1": score.pass_at_1, "humaneval_pass_at_1_low": score.low,
            "humaneval_pass_at_1_high": score.high, "humaneval_problems": score.total,
            TASK_IDS: task_ids, PROBLEM_SERIES: {"humaneval_pass": [float(results[t].passed) for t in task_ids]}}


def humaneval_flips(metrics: dict, base_metrics: dict) -> dict:
    """The variant against the f16 base on the same problems: lost/gained counts and ids, the paired
    difference's interval and McNemar's p. Empty unless both ran the same problems."""
    ids, base_ids = metrics.get(TASK_IDS), base_metrics.get(TASK_IDS)
    if not ids or ids != base_ids:
        return {}
    own = dict(zip(ids, (v > 0.5 for v in metrics[PROBLEM_SERIES]["humaneval_pass"])))
    base = dict(zip(ids, (v > 0.5 for v in base_metrics[PROBLEM_SERIES]["humaneval_pass"])))
    result = paired(base, own)
    return {"humaneval_lost": float(len(result.flips.lost)), "humaneval_gained": float(len(result.flips.gained)),
            "humaneval_diff": result.difference, "humaneval_diff_low": result.low, "humaneval_diff_high": result.high,
            "humaneval_mcnemar_p": result.p_value,
            FLIP_TAGS[0]: ",".join(result.flips.lost) or "-", FLIP_TAGS[1]: ",".join(result.flips.gained) or "-"}
