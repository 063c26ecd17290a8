import pytest

from tasks.core.errors import ConfigError
from tasks.evaluate.prompt_suite import (
    DEFAULT_SUITE, Expect, golden_agreement, load_prompt_suite, mean_golden_agreement, run_prompts_request,
    score_answer, task_score,
)
from tests.helpers import write_config

GOOD = {"id": "add", "kind": "arithmetic", "prompt": "2+2?", "expect": {"regex": r"\b4\b"}}


def test_shipped_suite_validates_and_every_prompt_is_checkable():
    suite = load_prompt_suite(DEFAULT_SUITE)
    assert 10 <= len(suite.prompts) <= 16 and suite.max_tokens <= 64
    assert {"arithmetic", "code", "reasoning"} <= {p.kind for p in suite.prompts}
    for prompt in suite.prompts:
        assert (prompt.expect.exact is None) != (prompt.expect.regex is None), prompt.id


def test_unknown_keys_and_every_other_problem_are_reported_at_once(tmp_path):
    bad = {"max_tokens": 48, "colour": "red", "prompts": [
        {**GOOD, "answer": "4"},
        {**GOOD, "id": "both", "expect": {"exact": "4", "regex": "4"}},
        {**GOOD, "id": "neither", "expect": {}},
        {**GOOD, "id": "broken", "expect": {"regex": "(unclosed"}},
        {**GOOD, "id": "kind", "kind": "poetry"},
    ]}
    with pytest.raises(ConfigError) as info:
        load_prompt_suite(write_config(tmp_path / "p.yaml", bad))
    text = str(info.value)
    assert len(info.value.problems) == 6, text
    assert "colour: unknown key" in text and "prompts.0.answer: unknown key" in text
    assert text.count("exactly one of `exact` or `regex`") == 2
    assert "does not compile" in text and "prompts.4.kind" in text


def test_duplicate_ids_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="repeated: add"):
        load_prompt_suite(write_config(tmp_path / "p.yaml", {"prompts": [GOOD, GOOD]}))


def test_regex_is_searched_anywhere():
    expect = Expect(regex=r"\b42\b")
    assert score_answer("23 + 19 = 42.", expect)
    assert not score_answer("23 + 19 = 420", expect)


def test_exact_ignores_case_spacing_quotes_and_a_final_stop_but_nothing_else():
    expect = Expect(exact="Cold")
    assert score_answer("  cold.\n", expect) and score_answer('"Cold"', expect)
    assert not score_answer("The opposite of hot is cold.", expect)


def test_golden_agreement_is_the_reproduced_prefix_share():
    base = [5, 6, 7, 2]
    assert golden_agreement([5, 6, 7, 2], base) == 1.0
    assert golden_agreement([5, 6, 9, 7, 2], base) == 0.5  # an inserted token ends the agreement
    assert golden_agreement([5, 6, 2], base) == 0.5  # stopping early is a divergence
    assert golden_agreement([9, 6, 7, 2], base) == 0.0
    assert golden_agreement([5, 6, 7, 2, 8], base) == 1.0  # base fully reproduced


def test_golden_agreement_of_empty_outputs():
    assert golden_agreement([], []) == 1.0
    assert golden_agreement([3], []) == 0.0
    assert golden_agreement([], [3]) == 0.0


def test_scores_over_rows():
    rows = [{"id": "a", "tokens": [1, 2], "correct": True}, {"id": "b", "tokens": [3, 4], "correct": False}]
    base = [{"id": "a", "tokens": [1, 2]}, {"id": "b", "tokens": [3, 5]}, {"id": "c", "tokens": [1]}]
    assert task_score(rows) == 0.5 and task_score([]) == 0.0
    assert mean_golden_agreement(rows, base) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same suite"):
        mean_golden_agreement(rows, [{"id": "z", "tokens": [1]}])


class _EchoModel:
    """A LoadedModel edge fake: answers "4" then the end token to every prompt."""

    END = 0

    def chat_tokens(self, message: str) -> list[int]:
        return [ord(c) for c in message]

    def greedy(self, prompt_ids: list[int], max_tokens: int) -> list[int]:
        return [ord("4"), self.END][:max_tokens]

    def is_end(self, token: int) -> bool:
        return token == self.END

    def detokenize(self, token_ids: list[int]) -> str:
        return "".join(chr(t) for t in token_ids)


def test_prompts_request_runs_the_suite_on_any_loaded_model(tmp_path):
    suite = write_config(tmp_path / "p.yaml", {"max_tokens": 5, "prompts": [
        GOOD, {**GOOD, "id": "five", "expect": {"exact": "5"}},
    ]})
    result = run_prompts_request(_EchoModel(), {"prompts_file": str(suite)})
    assert (result["n_prompts"], result["max_tokens"], result["task_score"]) == (2, 5, 0.5)
    first = result["prompts"][0]
    assert first == {"id": "add", "kind": "arithmetic", "output": "4", "tokens": [ord("4"), 0], "correct": True}
    assert run_prompts_request(_EchoModel(), {"prompts_file": str(suite), "max_tokens": 1})["prompts"][0]["tokens"] == [52]
