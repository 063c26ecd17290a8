"""Memory read bandwidth: the physical ceiling of decode speed on a CPU.

Decoding one token reads every weight once, so decode tok/s x bytes per token cannot exceed what
the memory system delivers. `decode_efficiency` says how close a variant gets to that ceiling;
the ceiling itself comes from a short probe, measured once per machine and thread count and cached.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tasks.evaluate.read_kernel import compile_read_kernel
from tasks.store.jsoncache import read_json_dict, write_json_atomically

MIN_BUFFER_BYTES = 512 * 2**20  # well past the LLC of common desktop and server CPUs
LLC_MULTIPLE = 8  # a buffer 8x the LLC leaves at most ~12 % of reads served by cache
REPETITIONS = 7
# Bumped whenever the probe changes what it can reach: cached figures of an older probe are
# measured again, not reused. 2: compiled C kernel and several thread counts (1: numpy only,
# which read a third less than llama.cpp itself on some hosts, so efficiencies came out > 1).
PROBE_VERSION = 2

class ReadBandwidth(float):
    """A read bandwidth in bytes/s (use it as the float it is) that says how it was reached.

    `kernel` is the kernel and thread count that read fastest, `kernels` the best figure of every
    one tried, `note` why a kernel could not run (no C compiler, say), else "".
    """

    kernel: str
    kernels: dict[str, float]
    note: str

    def __new__(cls, kernels: dict[str, float], note: str = "") -> ReadBandwidth:
        kernel = max(kernels, key=kernels.__getitem__)
        self = super().__new__(cls, kernels[kernel])
        self.kernel, self.kernels, self.note = kernel, dict(kernels), note
        return self

    def __getnewargs__(self) -> tuple[dict[str, float], str]:  # pickling rebuilds from these
        return self.kernels, self.note

    def record(self) -> dict:
        return {"bytes_per_s": float(self), "kernel": self.kernel, "kernels": self.kernels, "note": self.note}


def last_level_cache_bytes() -> int:
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
    return max(MIN_BUFFER_BYTES, LLC_MULTIPLE * last_level_cache_bytes())


def _best_rate(one_pass: Callable[[], float], n_bytes: int, repetitions: int) -> float:
    """Bytes/s of the fastest of `repetitions` passes after one untimed warm-up pass.

    The fastest, as STREAM reports: interference (other processes, page-cache activity) only
    ever lowers a pass's figure, so the fastest is the least disturbed estimate of what the
    hardware delivers, which is what a ceiling should be. The warm-up keeps thread start-up and
    first touches out of the figure.
    """
    one_pass()
    return n_bytes / min(one_pass() for _ in range(repetitions))


def _numpy_rate(buffer: np.ndarray, threads: int, repetitions: int) -> float:
    # numpy releases the GIL inside reductions, so the threads stream memory in parallel.
    slices = np.array_split(buffer, threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def one_pass() -> float:
            started = time.perf_counter()
            list(pool.map(np.sum, slices))
            return time.perf_counter() - started

        return _best_rate(one_pass, buffer.nbytes, repetitions)


def _c_rate(lib: ctypes.CDLL, buffer: np.ndarray, threads: int, repetitions: int) -> float:
    address, words = buffer.ctypes.data, buffer.size

    def one_pass() -> float:
        seconds = lib.slmforge_read_pass(address, words, threads)
        if seconds <= 0:
            raise OSError(f"the C read kernel could not start {threads} threads")
        return seconds

    return _best_rate(one_pass, buffer.nbytes, repetitions)


def measure_read_bandwidth(threads: int, *, buffer_bytes: int | None = None,
                           repetitions: int = REPETITIONS, kernel_dir: Path | None = None) -> ReadBandwidth:
    """The best read bandwidth this host reaches, in bytes/s, and the kernel that reached it.

    The figure is a ceiling for decode speed, so a probe that reads slower than llama.cpp
    would report efficiencies above 1. Each kernel is therefore tried and the fastest kept:
    the compiled C streaming read (what SIMD code reaches) and numpy's sum, each with 1,
    `threads` and all logical cores (one core alone cannot saturate memory on most servers,
    and on some desktops fewer threads read faster).
    """
    n_bytes = buffer_bytes or probe_buffer_bytes()
    buffer = np.ones(n_bytes // 8, dtype=np.float64)  # np.ones writes every page: all resident
    counts = sorted({1, max(1, threads), os.cpu_count() or 1})
    lib, note = compile_read_kernel(kernel_dir)
    kernels: dict[str, float] = {}
    for count in counts:
        kernels[f"numpy x{count}"] = _numpy_rate(buffer, count, repetitions)
        if lib is not None:
            try:
                kernels[f"c x{count}"] = _c_rate(lib, buffer, count, repetitions)
            except OSError as exc:
                note = f"{note}; {exc}" if note else str(exc)
    return ReadBandwidth(kernels, note)


def _cache_key(hardware_id: str, threads: int) -> str:
    return f"{hardware_id}/threads={threads}"


def cached_read_bandwidth(cache_file: Path, hardware_id: str, threads: int) -> float:
    """Read bandwidth for this machine and thread count, probed once and then read from `cache_file`.

    Keyed by hardware id and threads: the same machine with other threads, or another machine
    sharing the file (a network home), gets its own probe. An entry of another probe version
    (an older, weaker probe) is measured again and replaced.
    """
    data = read_json_dict(cache_file)
    entry = data.get(_cache_key(hardware_id, threads))
    if isinstance(entry, dict) and entry.get("probe_version") == PROBE_VERSION and entry.get("bytes_per_s", 0) > 0:
        return float(entry["bytes_per_s"])
    measured = measure_read_bandwidth(threads)
    how = measured.record() if isinstance(measured, ReadBandwidth) else {"bytes_per_s": float(measured)}
    data = read_json_dict(cache_file)  # re-read: another process may have added entries meanwhile
    data[_cache_key(hardware_id, threads)] = {
        **how, "probe_version": PROBE_VERSION, "threads": threads, "hardware_id": hardware_id,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomically(cache_file, data)
    return float(measured)


def cached_probe_record(cache_file: Path, hardware_id: str, threads: int) -> dict:
    """The stored probe entry (kernel, every kernel's figure, when), {} when there is none."""
    entry = read_json_dict(cache_file).get(_cache_key(hardware_id, threads))
    return entry if isinstance(entry, dict) else {}


def decode_efficiency(decode_tps: float, bytes_per_token: float, bandwidth: float) -> float | None:
    """Share of the memory read limit a decode uses: decode_tps x bytes_per_token / bandwidth.

    bytes_per_token is the GGUF's tensor bytes (`weight_bytes_per_token`): decoding one token
    reads every weight once. KV-cache reads are neglected, which holds at short depth (tg128 from
    an empty cache: the cache is a few MB against the weights' hundreds); at long depth they add
    to the real traffic, so the figure understates efficiency there. 1.0 means memory-bound at
    the probe's bandwidth, the best this host was measured to read.

    None where the figure would exceed 1.0: no decode reads DRAM faster than the host can, so
    bytes were served from cache (a tiny model's weights fit in the LLC) or the weights were
    not all read; the ratio is then not an efficiency and must not be reported as one
    (`derived_metrics` records the read rate and an over-limit flag instead).
    """
    if decode_tps < 0 or bytes_per_token <= 0 or bandwidth <= 0:
        raise ValueError(
            f"decode_efficiency needs decode_tps >= 0 and positive bytes and bandwidth, got "
            f"{decode_tps}, {bytes_per_token}, {bandwidth}"
        )
    share = decode_tps * bytes_per_token / bandwidth
    return share if share <= 1.0 else None


if __name__ == "__main__":
    threads = os.cpu_count() or 1
    probe = measure_read_bandwidth(threads)
    print(f"buffer {probe_buffer_bytes() / 2**20:.0f} MiB, probe version {PROBE_VERSION}")
    for kernel, rate in sorted(probe.kernels.items()):
        print(f"  {kernel:>10}: {rate / 1e9:6.1f} GB/s")
    print(f"best: {probe / 1e9:.1f} GB/s ({probe.kernel}){'; ' + probe.note if probe.note else ''}")
