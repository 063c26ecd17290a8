"""The smoke test: checkable prompts through the server's chat endpoint with the `openai` client.

Answers are checked for content with the prompt suite's own rules (not just a 200), and compared
with the answers the same file gave offline (greedy, same chat template): a server that applies
another template, drops the system prompt or samples differently answers differently.
"""

from __future__ import annotations

import time

from openai import OpenAI, OpenAIError

from tasks.evaluate.prompt_suite import Prompt, score_answer

# Greedy on llama-cpp-python's server: temperature 0, and its default repeat penalty (1.1 in its
# request model) switched off, as in the offline greedy run the answers are compared with.
GREEDY = {"temperature": 0.0, "extra_body": {"repeat_penalty": 1.0}}


def ask_prompts(base_url: str, api_key: str, model: str, prompts: list[Prompt], *, max_tokens: int,
                timeout_s: float) -> list[dict]:
    """One row per prompt: id, output, completion tokens, seconds, correct, error (None when answered)."""
    client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
    rows = []
    for prompt in prompts:
        started = time.perf_counter()
        row = {"id": prompt.id, "output": "", "completion_tokens": 0, "correct": False, "error": None}
        try:
            response = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt.prompt}], max_tokens=max_tokens, **GREEDY)
            row["output"] = response.choices[0].message.content or ""
            row["completion_tokens"] = response.usage.completion_tokens if response.usage else 0
            row["correct"] = score_answer(row["output"], prompt.expect)
        except OpenAIError as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    return rows


def judge_smoke(rows: list[dict], offline_rows: list[dict] | None, *, max_lost_answers: int) -> tuple[dict, list[str]]:
    """Smoke figures and the reasons it failed (empty when it passed).

    Fails on any request error, and when the server answers fewer prompts rightly than the same
    file did offline by more than `max_lost_answers` (matched by prompt id)."""
    offline = {row["id"]: row for row in offline_rows or []}
    for row in rows:  # an empty answer is a failure unless the same file answered nothing offline too
        if not row["error"] and not row["output"].strip() and offline.get(row["id"], {}).get("output", "x").strip():
            row["error"] = "empty answer"
    errors = [row for row in rows if row["error"]]
    correct = sum(row["correct"] for row in rows)
    metrics = {"serve_smoke_requests": len(rows), "serve_smoke_errors": len(errors),
               "serve_task_score": correct / len(rows) if rows else 0.0}
    reasons = [f"served prompt {row['id']!r} failed: {row['error']}" for row in errors]
    shared = [row for row in rows if row["id"] in offline]
    if shared:
        same = sum(row["output"].strip() == offline[row["id"]]["output"].strip() for row in shared)
        metrics["serve_offline_agreement"] = same / len(shared)
        lost = [row["id"] for row in shared if offline[row["id"]]["correct"] and not row["correct"]]
        if len(lost) > max_lost_answers:
            reasons.append(f"the server answered {len(lost)} prompt(s) wrongly that the same file answered rightly "
                           f"offline ({', '.join(lost)}); allowed: serve.max_lost_answers={max_lost_answers}")
    metrics["serve_smoke_pass"] = 0.0 if reasons else 1.0
    return metrics, reasons
