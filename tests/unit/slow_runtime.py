"""A measurement runtime that never finishes (tokenize sleeps): for tests of the worker's lifetime,
which is about processes, not about any model."""

import time


def tokenize_text(path, text):
    time.sleep(120)
    return {"tokens": [], "bos": None}
