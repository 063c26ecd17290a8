"""slmforge's own code as a cache input: a fix in the code that makes an artefact or a figure
must invalidate what the old code stored, without hand-written marker strings or module lists.

A step names the module that computes its output (usually its own `__name__`, or the module a
worker process runs); its code identity hashes the source of that module and of every project
module it imports, transitively: its import closure within tasks/ and flows/, read from the source
with `ast` (nothing is imported), imports inside functions included. So an edit to any module the
step runs changes its key, and an edit elsewhere (the CLI, another format, the README) keeps the
store warm. A module run as a separate process by name is a root of its own (the caller names it).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PROJECT_PACKAGES = ("tasks", "flows")
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
    if _source(module) is None:
        raise ValueError(f"code_identity: module {module!r} not found")
    closure: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in closure or (path := _source(name)) is None:
            continue
        closure[name] = path
        todo.extend(imported for imported in _project_imports(name, path) if imported not in closure)
    return closure


def _source(name: str) -> Path | None:
    """The source file of a project module or package, found on disk (nothing is imported)."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _project_imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its source. `from package import x` counts the
    submodule `package.x` when there is one, else the package itself (where `x` is defined)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _source(f"{base}.{alias.name}") else base)
    return {module for module in found if module.split(".")[0] in PROJECT_PACKAGES}
