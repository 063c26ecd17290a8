"""llama.cpp's own command-line tools (llama-imatrix, llama-quantize), built by `make setup`.

Why binaries and not the Python binding: an importance matrix reaches llama_model_quantize only as a
C++ std::unordered_map pointer (llama_model_quantize_params.imatrix), which ctypes cannot build, and
the tensor-type overrides are C++ vectors too. `tasks/formats/gguf/build_llama_tools.sh` builds both tools from
the llama-cpp-python sdist (the same llama.cpp commit as the binding) into a cache outside the clone,
so fresh clones and later runs reuse one build; tools.json there names the version and commit.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tasks.errors import SourceError

TOOLS_VERSION = "0.3.36"  # llama-cpp-python sdist the tools are built from (tasks/formats/gguf/build_llama_tools.sh)
BUILD_SCRIPT = Path(__file__).resolve().parent / "build_llama_tools.sh"


def tools_dir() -> Path:
    """Where the build script put the tools (same rule as the script). Not under XDG_CACHE_HOME: a
    test session or a CI job that moves its caches still finds the one build."""
    if env := os.environ.get("SLMFORGE_LLAMA_TOOLS"):
        return Path(env)
    return Path.home() / ".cache" / "slmforge" / f"llama-tools-{TOOLS_VERSION}"


def tool_path(name: str) -> Path:
    """The path of one tool, or an error that says how to build it."""
    path = tools_dir() / "build" / "bin" / name
    if not os.access(path, os.X_OK) or not (tools_dir() / "tools.json").is_file():
        raise SourceError(
            f"llama.cpp's {name} is not built (looked for {path}); importance-matrix and tensor-override GGUF "
            f"types need it. Run `make setup` or `bash {BUILD_SCRIPT}` (about 10 minutes on 2 cores, once)."
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
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise SourceError(f"llama.cpp's {name} failed to {what} (exit {done.returncode}). Its last lines:\n{tail}")
