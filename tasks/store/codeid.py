"""slmforge's own code as a cache input: a fix in the code that makes an artefact or a figure
must invalidate what the old code stored, without hand-written marker strings or module lists.

A step names the module that computes its output (usually its own `__name__`, or the module a
worker process runs); its code identity hashes the source of that module and of every project
module it imports, transitively: its import closure within tasks/ and flows/, read from the source
with `ast` (nothing is imported), imports inside functions included. So an edit to any module the
step runs changes its key, and an edit elsewhere (the CLI, another format, the README) keeps the
store warm. A module run as a separate process by name is a root of its own (the caller names it).
A root outside tasks/ and flows/ (a format registered from the user's own package) brings its own
top-level package into the closure, found where Python would import it from.

The packages that decide whether, when and where a step runs (the memory planner, host locks and
process groups) are left out: a step's core imports them to refuse work that would not fit, not to
compute its output, and counting them turned the whole store cold at every change of a memory
overhead. What of their decisions does shape an output (a dequantize's method and dtype, the threads,
the hardware) enters the step's key by value, and the constants an output depends on live in the
module that writes it (e.g. the streamed dequantize's shard size).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from tasks.core.pysource import parse_python

PROJECT_PACKAGES = ("tasks", "flows")
ADMISSION_PACKAGES = ("tasks.plan", "tasks.hosts")
# The folder holding tasks/ and flows/: the checkout, or site-packages when installed.
ROOT = Path(__file__).resolve().parents[2]


@cache
def code_identity(*modules: str) -> str:
    """sha256 of the sources of the import closures of `modules`, short hex."""
    files: dict[str, Path] = {}
    for name in modules:
        files.update(import_closure(name))
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(files[name].read_bytes())
    return digest.hexdigest()[:16]


@cache
def import_closure(module: str) -> dict[str, Path]:
    """`module` and every project module it imports, directly or not: name -> source file."""
    roots = _package_roots(module.split(".")[0])
    if _source(module, roots) is None:
        raise ValueError(f"code_identity: module {module!r} not found (looked under "
                         f"{', '.join(str(root / top) for top, root in roots.items())})")
    closure: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in closure or _is_admission(name) or (path := _source(name, roots)) is None:
            continue
        closure[name] = path
        todo.extend(imported for imported in _project_imports(name, path, roots) if imported not in closure)
    return closure


def _is_admission(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in ADMISSION_PACKAGES)


def _package_roots(top: str) -> dict[str, Path]:
    """Top-level package -> the folder holding it: tasks/ and flows/, plus `top` when it is another
    package (a plugin's). Only the package's location is looked up; its modules are not imported."""
    roots = {package: ROOT for package in PROJECT_PACKAGES}
    if top not in roots:
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            roots[top] = Path(next(iter(spec.submodule_search_locations))).parent
    return roots


def _source(name: str, roots: dict[str, Path]) -> Path | None:
    """The source file of a module or package under one of `roots`, found on disk."""
    root = roots.get(name.split(".")[0])
    if root is None:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _project_imports(name: str, path: Path, roots: dict[str, Path]) -> set[str]:
    """Modules under `roots` that `name` imports anywhere in its source. `from package import x`
    counts the submodule `package.x` when there is one, else the package itself (where `x` is defined)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(parse_python(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _source(f"{base}.{alias.name}", roots) else base)
    return {module for module in found if module.split(".")[0] in roots}
