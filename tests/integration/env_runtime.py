"""A test runtime for tasks.evaluate.worker: its tokenize reports the worker's OpenMP wait policy."""

import os


def tokenize_text(model_path, text: str) -> dict:
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
