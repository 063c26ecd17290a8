#!/usr/bin/env bash
# Build llama.cpp's llama-imatrix and llama-quantize into a cache outside the clone, once per
# llama-cpp-python version: the importance-matrix GGUF types need them (the Python binding cannot
# pass an imatrix: llama_model_quantize_params.imatrix is a C++ std::unordered_map pointer).
# Source: the llama-cpp-python sdist on PyPI (sha256-pinned), i.e. the exact llama.cpp commit the
# binding runs. Idempotent and safe to run concurrently (flock); a finished build costs nothing.
# Writes tools.json (version, sdist sha256, llama.cpp build line) beside the binaries; the pipeline
# records it with every artefact made by these tools.
# Usage: tasks/formats/gguf/build_llama_tools.sh   (env: PYTHON, JOBS, SLMFORGE_LLAMA_TOOLS = the target folder)
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
TARGETS=(llama-imatrix llama-quantize)

DEST="${SLMFORGE_LLAMA_TOOLS:-$HOME/.cache/slmforge/llama-tools-$VERSION}"
BIN="$DEST/build/bin"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9  # a second build at the same time waits, then finds the finished one

done_already() {
  [[ -f "$DEST/tools.json" ]] || return 1
  for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}
if done_already; then echo "$DEST"; exit 0; fi

command -v cmake >/dev/null || {
  echo "building llama.cpp's tools needs cmake and a C++ compiler: apt-get install cmake g++ (or pip install cmake)" >&2
  exit 1
}
SDIST="$DEST/dist/llama_cpp_python-$VERSION.tar.gz"
SRC="$DEST/llama_cpp_python-$VERSION/vendor/llama.cpp"
mkdir -p "$DEST/dist"
if [[ ! -f "$SDIST" ]]; then
  # --no-binary :all: forces the .tar.gz (a wheel has no llama.cpp sources).
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d "$DEST/dist"
fi
echo "$SHA256  $SDIST" | sha256sum -c --quiet -
# The whole sdist: its .git/modules lets cmake's build-info name the real llama.cpp commit.
[[ -f "$SRC/CMakeLists.txt" ]] || tar -xzf "$SDIST" -C "$DEST"

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
# CPU-only, static, nothing but common + the two tools (2-core CI); GGML_NATIVE at its default
# (ON), like the pip-built binding.
cmake -S "$SRC" -B "$DEST/build" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF >"$DEST/cmake.log"
cmake --build "$DEST/build" --target "${TARGETS[@]}" -j "${JOBS:-$(nproc)}" >"$DEST/build.log"

BUILD_LINE="$("$BIN/llama-imatrix" --version 2>&1 | grep -m1 "^version" || true)"
"${PYTHON:-python3}" - "$DEST/tools.json.tmp" "$VERSION" "$SHA256" "$BUILD_LINE" <<'PY'
import json, sys
path, version, sha, line = sys.argv[1:]
json.dump({"llama-cpp-python-sdist": version, "sdist_sha256": sha, "llama.cpp": line}, open(path, "w"), indent=2)
PY
mv "$DEST/tools.json.tmp" "$DEST/tools.json"
echo "$DEST"
