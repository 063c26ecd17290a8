#!/usr/bin/env bash
# Build llama.cpp's reference tools (llama-perplexity, llama-bench, llama-quantize)
# from the llama.cpp vendored in the llama-cpp-python sdist on PyPI.
# Why the sdist: it is the only registry-reachable source, and it pins the exact
# llama.cpp commit our Python binding runs, so both measure the same kernels.
# Usage: tests/benchmarks/build_llama_tools.sh   (env: PYTHON, JOBS)
set -euo pipefail

VERSION=0.3.36
# Pinned so a re-download that differs (index swap, re-upload) fails loudly.
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
TARGETS=(llama-perplexity llama-bench llama-quantize)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="$ROOT/.peers"                                   # git-ignored
SDIST="$PEERS/dist/llama_cpp_python-$VERSION.tar.gz"
SRC="$PEERS/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$PEERS/llama.cpp-$VERSION/build"
BIN="$BUILD/bin"

print_bins() { for t in "${TARGETS[@]}"; do echo "$BIN/$t"; done; }

# Idempotent: a finished build costs nothing on re-run.
missing=0
for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || missing=1; done
if [[ $missing -eq 0 ]]; then print_bins; exit 0; fi

# --no-binary :all: forces the .tar.gz (a wheel has no llama.cpp sources).
# pip prepares the sdist's metadata (scikit-build-core), hence ~45 s here.
mkdir -p "$PEERS/dist"
if [[ ! -f "$SDIST" ]]; then
  "${PYTHON:-python3}" -m pip download --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d "$PEERS/dist"
fi
echo "$SHA256  $SDIST" | sha256sum -c --quiet -

# Extract the whole sdist (not just vendor/): its .git/modules lets cmake's
# build-info resolve the real llama.cpp commit instead of "unknown".
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
  tar -xzf "$SDIST" -C "$PEERS"
fi

# CPU-only, static (self-contained binaries), nothing but common+tools:
# tests/examples/server/app off to save compile time on 2 cores; OpenSSL/curl
# off because the tools only read local files. GGML_NATIVE stays at its
# default (ON), like the pip-built binding, so numbers are comparable.
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF
cmake --build "$BUILD" --target "${TARGETS[@]}" -j "${JOBS:-2}"

print_bins
