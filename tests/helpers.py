"""Helpers shared by the tests (fixtures live in conftest.py; plain functions and constants here)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The plumbing tests' protocol. No speed anchor: a second process loading the f16 beside every
# measurement of every plumbing test; the e2e default run (configs/eval/quick.yaml) and
# tests/integration/test_prompt_worker.py time real variants beside it.
QUICK_EVAL = {
    "max_chunks": 2, "n_ctx": 128, "prefill_tokens": 32, "decode_tokens": 8, "repetitions": 3,
    "ttft_prompt_tokens": 8, "threads": 2, "speed_anchor": False,
    # The main text only: tests/integration/test_domain_passes.py and the e2e default run score domains.
    "domains": None,
}


def write_config(path: Path, data: dict) -> Path:
    """Write a YAML config (JSON is valid YAML) and return its path."""
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def remove_after_module(path: Path) -> None:
    """Delete a module fixture's folder once its tests are done. pytest keeps every
    tmp_path_factory folder until the session ends, and the model runs write gigabytes (the
    1.5B model's dequantized weights alone are 7.1 GB): kept, they fill a CI disk before the suite
    ends. SLMFORGE_KEEP_TEST_FILES=1 keeps them for a look after a failure."""
    if os.environ.get("SLMFORGE_KEEP_TEST_FILES", "") in ("", "0"):
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def one_small_tier_run():
    """Held while a test writes the 1.5B model (~10 GB of dequantized weights and GGUFs): two such
    files on two pytest-xdist workers take turns instead of filling the disk together."""
    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "slmforge-tests-small-tier.lock"):
        yield


def tools_required() -> bool:
    """CI (SLMFORGE_REQUIRE_TOOLS=1) must run every check: a missing validator fails there."""
    return os.environ.get("SLMFORGE_REQUIRE_TOOLS", "") not in ("", "0")


def require_tool(name: str, how: str, *, found: str | None = None) -> str:
    """The tool's path; where it is missing, skip with the reason on a developer's machine and fail in CI."""
    path = found or shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({how})"
        if tools_required():
            pytest.fail(f"{message}; CI requires it (SLMFORGE_REQUIRE_TOOLS=1)")
        pytest.skip(message)
    return path


def tiny_build_inputs(store: Path, model_dir: Path):
    """A GGUF format's build inputs for a local model: acquired and converted to its f16 base in `store`."""
    from tasks.acquire import AcquireConfig, acquire_model
    from tasks.acquire.sources import LocalSource
    from tasks.formats.base import BaseArtifact, BuildInputs
    from tasks.formats.gguf.convert import ConvertConfig, convert_to_gguf
    from tasks.formats.gguf.facts import gguf_size_facts

    model = acquire_model(LocalSource(kind="local", path=model_dir), AcquireConfig(), store_root=store)
    base = convert_to_gguf(model.hf_dir, architecture=model.architecture, identity=model.identity,
                           model_name="Tiny-Llama", config=ConvertConfig(), store_root=store)
    return BuildInputs(hf_dir=model.hf_dir, hf_identity=model.identity, architecture=model.architecture,
                       model_name="Tiny-Llama", store_root=store,
                       base=BaseArtifact(path=base.gguf_path, key=base.key, quant="F16",
                                         n_weights=int(gguf_size_facts(base.gguf_path)["n_weights"])))
