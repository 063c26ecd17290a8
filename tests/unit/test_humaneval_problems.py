"""HumanEval problems (tasks.evaluate.humaneval.problems): all 164 pinned by hash, subsets, refusals."""

from __future__ import annotations

import pytest

from tasks.evaluate.humaneval.problems import N_PROBLEMS, ProblemSubset, data_file, load_problems, program_text


def test_all_problems_load_from_the_pinned_file():
    problems = load_problems()
    assert len(problems) == N_PROBLEMS == 164
    assert problems[0].task_id == "HumanEval/0" and problems[-1].task_id == "HumanEval/163"


def test_subsets_by_count_and_by_id():
    assert [p.task_id for p in load_problems(ProblemSubset(count=2))] == ["HumanEval/0", "HumanEval/1"]
    assert [p.task_id for p in load_problems(ProblemSubset(task_ids=["HumanEval/7", "HumanEval/3"]))] == [
        "HumanEval/7", "HumanEval/3"]
    with pytest.raises(ValueError, match=r"unknown HumanEval task ids \['HumanEval/999'\]"):
        load_problems(ProblemSubset(task_ids=["HumanEval/999"]))
    with pytest.raises(ValueError, match="not both"):
        ProblemSubset(task_ids=["HumanEval/0"], count=1)
    with pytest.raises(ValueError, match="extra"):
        ProblemSubset(size=3)


def test_a_changed_data_file_is_refused(tmp_path):
    altered = tmp_path / "HumanEval.jsonl.gz"
    altered.write_bytes(data_file().read_bytes() + b"\0")
    with pytest.raises(ValueError, match="not the pinned"):
        load_problems(path=altered)


def test_program_is_prompt_completion_test_and_check():
    p = load_problems(ProblemSubset(count=1))[0]
    text = program_text(p, "    pass\n")
    assert text.startswith(p.prompt + "    pass\n") and text.rstrip().endswith(f"check({p.entry_point})")
