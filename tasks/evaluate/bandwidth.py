"""Memory read bandwidth: the physical ceiling of decode speed on a CPU.

Decoding one token reads every weight once, so decode tok/s x bytes per token cannot exceed what
the memory system delivers. `decode_efficiency` says how close a variant gets to that ceiling;
the ceiling itself comes from a short probe, measured once per machine and thread count and cached.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MIN_BUFFER_BYTES = 512 * 2**20  # well past the LLC of common desktop and server CPUs
LLC_MULTIPLE = 8  # a buffer 8x the LLC leaves at most ~12 % of reads served by cache
REPETITIONS = 7


def _last_level_cache_bytes() -> int:
    """Size of the largest CPU cache sysfs reports (0 where unknown, e.g. not Linux)."""
    largest = 0
    for size_file in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = size_file.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            largest = max(largest, int(digits) * scale)
    return largest


def probe_buffer_bytes() -> int:
    """Buffer size: far above the LLC so the probe measures DRAM, not cache."""
    return max(MIN_BUFFER_BYTES, LLC_MULTIPLE * _last_level_cache_bytes())


def measure_read_bandwidth(threads: int, *, buffer_bytes: int | None = None,
                           repetitions: int = REPETITIONS) -> float:
    """Read bandwidth in bytes/s: `threads` threads each sum their own slice of one large buffer.

    numpy releases the GIL inside reductions, so the threads stream memory in parallel, as the
    weight reads of a multi-threaded llama.cpp decode do. The best of `repetitions` runs is
    returned, as STREAM reports: interference (other processes, page-cache activity) only ever
    lowers a run's figure, so the fastest run is the least disturbed estimate of what the
    hardware can deliver, which is what a ceiling should be. One untimed pass first maps and
    touches every page so that page faults are not timed.
    """
    n_bytes = buffer_bytes or probe_buffer_bytes()
    buffer = np.ones(n_bytes // 8, dtype=np.float64)  # np.ones writes every page: all resident
    slices = np.array_split(buffer, threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def one_pass() -> float:
            started = time.perf_counter()
            list(pool.map(np.sum, slices))
            return time.perf_counter() - started

        one_pass()  # warm-up: thread start-up and first touch are not steady state
        best = min(one_pass() for _ in range(repetitions))
    return buffer.nbytes / best


def _cache_key(hardware_id: str, threads: int) -> str:
    return f"{hardware_id}/threads={threads}"


def _read_cache(cache_file: Path) -> dict:
    try:
        data = json.loads(cache_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # missing or torn by hand: re-probing costs seconds, never a wrong figure
    return data if isinstance(data, dict) else {}


def _write_atomically(cache_file: Path, data: dict) -> None:
    # Temp file in the same folder, then rename: a reader sees the old file or the new one, never
    # half of one. Two writers racing can drop one's entry; that costs a re-probe, nothing worse.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, cache_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_read_bandwidth(cache_file: Path, hardware_id: str, threads: int) -> float:
    """Read bandwidth for this machine and thread count, probed once and then read from `cache_file`.

    Keyed by hardware id and threads: the same machine with other threads, or another machine
    sharing the file (a network home), gets its own probe.
    """
    data = _read_cache(cache_file)
    entry = data.get(_cache_key(hardware_id, threads))
    if isinstance(entry, dict) and entry.get("bytes_per_s", 0) > 0:
        return float(entry["bytes_per_s"])
    bandwidth = measure_read_bandwidth(threads)
    data = _read_cache(cache_file)  # re-read: another process may have added entries meanwhile
    data[_cache_key(hardware_id, threads)] = {
        "bytes_per_s": bandwidth, "threads": threads, "hardware_id": hardware_id,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_atomically(cache_file, data)
    return bandwidth


def decode_efficiency(decode_tps: float, bytes_per_token: float, bandwidth: float) -> float:
    """Share of the memory bandwidth a decode uses: decode_tps x bytes_per_token / bandwidth.

    bytes_per_token is the GGUF's tensor bytes (`weight_bytes_per_token`): decoding one token
    reads every weight once. KV-cache reads are neglected, which holds at short depth (tg128 from
    an empty cache: the cache is a few MB against the weights' hundreds); at long depth they add
    to the real traffic, so the figure understates efficiency there. 1.0 means memory-bound at
    the probe's bandwidth; above 1.0 means the weights partly fit in cache (tiny models).
    """
    if decode_tps < 0 or bytes_per_token <= 0 or bandwidth <= 0:
        raise ValueError(
            f"decode_efficiency needs decode_tps >= 0 and positive bytes and bandwidth, got "
            f"{decode_tps}, {bytes_per_token}, {bandwidth}"
        )
    return decode_tps * bytes_per_token / bandwidth


def weight_bytes_per_token(gguf_path: Path) -> int:
    """Bytes of weights read to decode one token: the sum of the GGUF's tensor bytes.

    One refinement: with untied embeddings (an `output.weight` tensor is present) the token
    embedding table is only looked up, one row per token, so it is left out; with tied
    embeddings (SmolLM2) the same table is the output projection and is read in full.
    """
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf_path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors.get("token_embd.weight", 0)
    return total


if __name__ == "__main__":
    for n in sorted({1, os.cpu_count() or 1}):
        print(f"threads={n}: {measure_read_bandwidth(n) / 1e9:.1f} GB/s "
              f"(buffer {probe_buffer_bytes() / 2**20:.0f} MiB)")
