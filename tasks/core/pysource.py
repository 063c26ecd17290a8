"""Python source parsed with `ast`, one parse at a time in a process.

CPython 3.11's `ast.parse` is not safe from two threads at once: its AST constructor keeps one
recursion-depth counter per interpreter, and a thread switch inside one parse fails the other with
"SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). Here that failed
a whole default run when Prefect's two build threads each computed a code identity. A lock per
module was not enough (the calibration text had one, the code identity none): every parse in the
project goes through this one lock.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source)`, never concurrently with another parse of this process's project code."""
    with _LOCK:
        return ast.parse(source, filename=filename)
