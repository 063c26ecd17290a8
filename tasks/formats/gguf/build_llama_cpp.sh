#!/usr/bin/env bash
# One compile of llama.cpp for everything slmforge runs: the Python binding (llama-cpp-python) and
# llama.cpp's own tools (llama-quantize and llama-imatrix for the importance-matrix GGUF types;
# llama-perplexity and llama-bench, the peers of the comparison script) come from the same CMake
# build of the same sdist, so the tools are the binding's own llama.cpp: they link the very
# libllama.so / libggml*.so that the wheel carries.
#
# Why the tools at all: the binding cannot pass an importance matrix (llama_model_quantize_params.imatrix
# is a C++ std::unordered_map pointer) nor the tensor-type overrides (C++ vectors).
#
# How: `pip wheel` of the sha256-pinned llama-cpp-python sdist with the tool targets added to its CMake
# build and scikit-build-core's build folder kept in a cache outside the clone. The wheel is kept
# there too, so a fresh clone or a new venv installs it in seconds and compiles nothing.
# Idempotent and safe to run concurrently (flock). Writes tools.json (version, sdist and wheel sha256,
# llama.cpp build line), which the pipeline records with every artefact the tools make.
# Usage: tasks/formats/gguf/build_llama_cpp.sh   (env: PYTHON = the venv's python, JOBS,
#        SLMFORGE_LLAMA_CPP = the cache folder, CMAKE_ARGS = extra CMake flags, e.g. -DGGML_CUDA=on)
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
TOOLS=(llama-quantize llama-imatrix llama-perplexity llama-bench)
PYTHON="${PYTHON:-python3}"
# Bumped whenever the compile's flags change: a build made with other flags is compiled again.
RECIPE="native-no-amx-1"

DEST="${SLMFORGE_LLAMA_CPP:-$HOME/.cache/slmforge/llama-cpp-$VERSION}"
BIN="$DEST/build/bin"
mkdir -p "$DEST/dist" "$DEST/wheels"
exec 9>"$DEST/.lock"
flock 9  # a second set-up at the same time waits, then finds the finished build

say() { echo "[setup] $*" >&2; }  # stdout carries only the folder (callers read it)

tools_built() {
  for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
  compgen -G "$DEST/wheels/llama_cpp_python-$VERSION-*.whl" >/dev/null
}

# llama.cpp compiles for this CPU (-march=native). On a CPU with AMX (Intel Sapphire Rapids and
# later) that turns on ggml's AMX matrix multiply, which segfaults in ggml_backend_amx_mul_mat on the
# first batch of Q4_0, Q4_1 or Q8_0 weights (seen on a 2-core Xeon with amx_int8: every prefill of 8
# tokens or more; llama.cpp issue 20824, open, and the same crash in other projects' CI on such hosts).
# So AMX is left out: the AVX-512 kernels do the same work, and every host runs the same code paths.
# The flags go through CFLAGS/CXXFLAGS, which CMake takes as its first compile flags; -march=native
# never turns back on what -mno-* turned off. x86 compilers only (elsewhere there is no AMX).
no_amx_flags() {
  local flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  [[ "$(uname -m)" == x86_64 ]] || return 0
  echo 'int main(void) { return 0; }' | ${CC:-cc} $flags -x c -o /dev/null - 2>/dev/null || return 0
  echo "$flags"
}
NO_AMX="$(no_amx_flags)"

if [[ "$(cat "$DEST/recipe" 2>/dev/null)" != "$RECIPE" ]]; then
  # Compiled with other flags (or before the recipe was recorded): that build and its CMake cache
  # (which keeps the first flags it saw) are not reused.
  rm -rf "$DEST/build" "$DEST/wheels" "$DEST/tools.json"
  mkdir -p "$DEST/wheels"
fi

if ! tools_built; then
  command -v cmake >/dev/null || { echo "compiling llama.cpp needs cmake and a C/C++ compiler (pip install cmake, or your system's packages)" >&2; exit 1; }
  SDIST="$DEST/dist/llama_cpp_python-$VERSION.tar.gz"
  if [[ ! -f "$SDIST" ]]; then
    say "downloading the llama-cpp-python $VERSION sdist (llama.cpp's sources)"
    # --no-binary :all: forces the .tar.gz (a wheel has no llama.cpp sources).
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DEST/dist" \
      >"$DEST/download.log" 2>&1 || { cat "$DEST/download.log" >&2; exit 1; }
  fi
  echo "$SHA256  $SDIST" | sha256sum -c --quiet - || { echo "the sdist $SDIST is not the pinned one (sha256 $SHA256): delete it and run again" >&2; exit 1; }
  rm -f "$DEST"/wheels/*.whl
  JOBS="${JOBS:-$(nproc)}"
  say "compiling llama.cpp once for the binding and its tools (${TOOLS[*]}): about 6 min on 2 cores; log: $DEST/build.log"
  start=$SECONDS
  # A line a minute, so minutes of compiling are not minutes of silence.
  # Ninja numbers its steps ([67/207]): the last one says how far the compile is.
  ( while sleep 60; do
      step="$(grep -oE '^ *\[[0-9]+/[0-9]+\]' "$DEST/build.log" 2>/dev/null | tail -1 | tr -d ' []' || true)"
      say "  still compiling: $(( (SECONDS - start) / 60 )) min${step:+, step $step}"
    done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  # The sources, with one line of llama.cpp's CMake left out: tools/CMakeLists.txt adds tools/mtmd
  # (image and audio chat) whenever the tools are on, and mtmd installs its library unconditionally,
  # so a build of the tools alone fails at install unless mtmd (53 of 207 compile steps) is compiled
  # for nothing: slmforge never runs image chat, and the wheel never shipped its library. No source
  # file that is compiled changes (tools.json records the patch).
  SRC="$DEST/src"
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xzf "$SDIST" -C "$SRC" --strip-components=1
  "$PYTHON" - "$SRC/vendor/llama.cpp/tools/CMakeLists.txt" <<'PY'
import sys
from pathlib import Path
path = Path(sys.argv[1])
text = path.read_text()
line = "    add_subdirectory(mtmd)\n"
if text.count(line) != 1:
    sys.exit(f"{path}: expected one '{line.strip()}' to leave out, found {text.count(line)}; "
             "the pinned sdist changed? (tasks/formats/gguf/build_llama_cpp.sh)")
path.write_text(text.replace(line, "    # add_subdirectory(mtmd)  # left out by slmforge: image chat, never run\n"))
PY
  # Tools on, everything else a binding does not need off. LLAVA_BUILD=OFF: no image chat.
  # A user's own CMAKE_ARGS (e.g. -DGGML_CUDA=on) come first and are kept.
  CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF \
-DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" CFLAGS="${CFLAGS:-} $NO_AMX" CXXFLAGS="${CXXFLAGS:-} $NO_AMX" \
  "$PYTHON" -m pip wheel -v --no-deps --no-cache-dir -w "$DEST/wheels" "$SRC" \
    -C build-dir="$DEST/build" \
    -C "build.targets=llama;ggml;$(IFS=';'; echo "${TOOLS[*]}")" \
    >"$DEST/build.log" 2>&1 || { tail -30 "$DEST/build.log" >&2; echo "llama.cpp did not compile; the whole log is $DEST/build.log" >&2; exit 1; }
  kill $ticker 2>/dev/null || true
  say "compiled in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
  rm -f "$DEST/tools.json"
  echo "$RECIPE" > "$DEST/recipe"
fi

WHEEL="$(ls "$DEST"/wheels/llama_cpp_python-$VERSION-*.whl)"
if [[ ! -f "$DEST/tools.json" ]]; then
  BUILD_LINE="$("$BIN/llama-imatrix" --version 2>&1 | grep -m1 "^version" || true)"
  "$PYTHON" - "$DEST/tools.json.tmp" "$VERSION" "$SHA256" "$(sha256sum "$WHEEL" | cut -d' ' -f1)" "$BUILD_LINE" \
    "$RECIPE" "-march=native $NO_AMX" <<'PY'
import json, sys
path, version, sha, wheel_sha, line, recipe, cpu_flags = sys.argv[1:]
record = {"llama-cpp-python-sdist": version, "sdist_sha256": sha, "wheel_sha256": wheel_sha, "llama.cpp": line,
          "built_with": "one CMake build: the binding's wheel and these tools",
          "patch": "vendor/llama.cpp/tools/CMakeLists.txt: add_subdirectory(mtmd) left out (image chat)",
          "recipe": recipe, "cpu_flags": cpu_flags.strip()}
json.dump(record, open(path, "w"), indent=2)
PY
  mv "$DEST/tools.json.tmp" "$DEST/tools.json"
fi

# The binding in this Python: the wheel of the same build (seconds; nothing compiles).
# pip records the hash of the wheel it installed; the same hash means the same build.
if ! "$PYTHON" - "$(sha256sum "$WHEEL" | cut -d' ' -f1)" <<'PY' 2>/dev/null
import importlib.metadata, json, sys
direct = json.loads(importlib.metadata.distribution("llama-cpp-python").read_text("direct_url.json") or "{}")
sys.exit(0 if direct.get("archive_info", {}).get("hashes", {}).get("sha256") == sys.argv[1] else 1)
PY
then
  say "installing llama-cpp-python $VERSION from the one build ($(basename "$WHEEL"))"
  "$PYTHON" -m pip install --quiet --no-deps --force-reinstall "$WHEEL" >"$DEST/install.log" 2>&1 \
    || { cat "$DEST/install.log" >&2; exit 1; }
fi
echo "$DEST"
