"""llama.cpp's own command-line tools (llama-imatrix, llama-quantize; llama-perplexity and llama-bench
for the comparison script), made by `make setup` in the same compile as the Python binding.

Why binaries and not the Python binding: an importance matrix reaches llama_model_quantize only as a
C++ std::unordered_map pointer (llama_model_quantize_params.imatrix), which ctypes cannot build, and
the tensor-type overrides are C++ vectors too. `tasks/formats/gguf/build_llama_cpp.sh` builds the
binding's wheel and these tools in one CMake build of the llama-cpp-python sdist, in a cache outside
the clone: the tools link the same libllama as the binding, and fresh clones reuse the one build;
tools.json there names the version, the wheel and the llama.cpp commit.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

from tasks.core.errors import SourceError
from tasks.hosts import hostlock

TOOLS_VERSION = "0.3.36"  # llama-cpp-python sdist of the one build (tasks/formats/gguf/build_llama_cpp.sh)
BUILD_SCRIPT = Path(__file__).resolve().parent / "build_llama_cpp.sh"


def tools_dir() -> Path:
    """Where the build script keeps the build (same rule as the script). Not under XDG_CACHE_HOME: a
    test session or a CI job that moves its caches still finds the one build."""
    if env := os.environ.get("SLMFORGE_LLAMA_CPP"):
        return Path(env)
    return Path.home() / ".cache" / "slmforge" / f"llama-cpp-{TOOLS_VERSION}"


def same_build_as_binding() -> bool:
    """True when the installed binding is the wheel of the tools' own build (the same compile): pip
    records the sha256 of the wheel it installed (direct_url.json), the build records its wheel's
    (tools.json). Library files cannot be compared: the wheel's copies are stripped."""
    try:
        direct = json.loads(importlib.metadata.distribution("llama-cpp-python").read_text("direct_url.json") or "{}")
        built = json.loads((tools_dir() / "tools.json").read_text())
    except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
        return False
    installed = direct.get("archive_info", {}).get("hashes", {}).get("sha256")
    return installed is not None and installed == built.get("wheel_sha256")


def tool_path(name: str) -> Path:
    """The path of one tool, or an error that says how to build it."""
    path = tools_dir() / "build" / "bin" / name
    if not os.access(path, os.X_OK) or not (tools_dir() / "tools.json").is_file():
        raise SourceError(
            f"llama.cpp's {name} is not built (looked for {path}); importance-matrix and tensor-override GGUF "
            f"types need it. Run `make setup` or `PYTHON=.venv/bin/python bash {BUILD_SCRIPT}` (one compile of "
            "llama.cpp for the binding and its tools: about 6 minutes on 2 cores, once per machine)."
        )
    return path


def tools_record() -> dict[str, str]:
    """Version, sdist hash and llama.cpp build line of the tools: part of every key they shape."""
    tool_path("llama-quantize")
    return json.loads((tools_dir() / "tools.json").read_text())


def run_tool(name: str, args: list[str], *, log_path: Path, cwd: Path, what: str) -> None:
    """Run a tool with its output in `log_path` (a line per tensor is not for the terminal)."""
    command = [str(tool_path(name)), *args]
    with log_path.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=hostlock.child_env())
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise SourceError(f"llama.cpp's {name} failed to {what} (exit {done.returncode}). Its last lines:\n{tail}")
