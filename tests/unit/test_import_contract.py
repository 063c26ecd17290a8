"""The house's import rules: the layers of pyproject's [tool.importlinter], no import cycle between
modules, no private name taken from another module. Imports inside functions count like any other."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "flows")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the packages under `root` (no cache: nothing written into the checkout)."""
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", run, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)


def test_every_import_contract_is_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract bites: the core importing the command line is refused."""
    for name in (*PACKAGES, "pyproject.toml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    errors = tmp_path / "tasks" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    import tasks.cli.main  # noqa: F401\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "tasks.core.errors -> tasks.cli.main" in result.stdout


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        TopologicalSorter(imports).prepare()
    except CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(reversed(exc.args[1])))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_name_is_imported_across_modules(package):
    taken = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                taken += [f"{path.relative_to(REPO)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_")]
    assert taken == []


# Run as processes of their own (the acquire step's dequantizers): loading torch is what they are for.
OWN_PROCESS = {"tasks/acquire/dequantize.py", "tasks/acquire/dequantize_stream.py"}


def _function_import_groups(tree: ast.AST):
    """Runs of consecutive import statements inside function bodies."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for holder in ast.walk(function):
            for body in (getattr(holder, name, None) for name in ("body", "orelse", "finalbody")):
                run: list[ast.stmt] = []
                for statement in [*body, None] if isinstance(body, list) else []:
                    if isinstance(statement, (ast.Import, ast.ImportFrom)):
                        run.append(statement)
                    elif run:
                        yield run
                        run = []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_import_inside_a_function_says_why(package):
    """An import inside a function keeps a heavy runtime (or the CLI's start) out of the common path;
    a comment on it, or on the line above it, says which."""
    silent = set()
    for path in sorted((REPO / package).rglob("*.py")):
        name = str(path.relative_to(REPO))
        if name in OWN_PROCESS:
            continue
        lines = path.read_text().splitlines()
        for run in _function_import_groups(ast.parse("\n".join(lines))):
            first, last = run[0].lineno - 1, run[-1].end_lineno - 1
            if not any("#" in lines[k] for k in range(first - 1, last + 1)):
                silent.add(f"{name}:{run[0].lineno}")
    assert sorted(silent) == []

