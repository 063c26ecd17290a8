"""Every one of the 164 canonical solutions passes in the sandbox: its limits and its bare root break no
legitimate HumanEval program (a false failure would bias every pass@1). About 40 s."""

from __future__ import annotations

import pytest

from tasks.evaluate.humaneval.problems import load_problems
from tasks.evaluate.humaneval.run import score_completions
from tasks.evaluate.humaneval.sandbox import isolation_problem


@pytest.mark.skipif(isolation_problem() is not None, reason=f"no sandbox here: {isolation_problem()}")
def test_all_canonical_solutions_pass_in_the_sandbox():
    problems = load_problems()
    score, results = score_completions(problems, {p.task_id: p.canonical_solution for p in problems})
    failed = {t: r.output[-300:] for t, r in results.items() if not r.passed}
    assert score.passed == 164 and not failed, failed
