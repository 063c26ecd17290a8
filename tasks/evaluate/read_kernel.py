"""The C read kernel of the bandwidth probe (tasks.evaluate.bandwidth): its source, compiled once per
source, compiler and CPU into the user's cache folder, loaded with ctypes."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

# A plain streaming read: each thread sums its own slice of 64-bit words. Four accumulators
# let -O3 -march=native vectorise the loop, so it reads as fast as the cores can issue loads,
# as llama.cpp's SIMD dot products do. The sum goes to a volatile so no read is optimised away.
C_KERNEL = r"""
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct { const uint64_t *start; size_t words; uint64_t sum; } slice_t;
volatile uint64_t slmforge_sink;

static void *read_slice(void *arg) {
    slice_t *s = (slice_t *)arg;
    const uint64_t *p = s->start;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 4 <= s->words; i += 4) { a += p[i]; b += p[i + 1]; c += p[i + 2]; d += p[i + 3]; }
    for (; i < s->words; i++) a += p[i];
    s->sum = a + b + c + d;
    return NULL;
}

/* Seconds for `threads` threads to read `words` words once; -1 if a thread cannot start. */
double slmforge_read_pass(const uint64_t *buffer, size_t words, int threads) {
    pthread_t ids[256];
    slice_t slices[256];
    int started = 0, failed = 0;
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    size_t per = words / (size_t)threads;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int t = 0; t < threads; t++) {
        slices[t].start = buffer + (size_t)t * per;
        slices[t].words = (t == threads - 1) ? words - (size_t)t * per : per;
        if (pthread_create(&ids[t], NULL, read_slice, &slices[t]) != 0) { failed = 1; break; }
        started++;
    }
    uint64_t total = 0;
    for (int t = 0; t < started; t++) { pthread_join(ids[t], NULL); total += slices[t].sum; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    slmforge_sink = total;
    return failed ? -1.0 : (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}
"""
# -march=native first: the widest loads this CPU has; plain -O3 where the compiler refuses it.
COMPILE_FLAGS = (("-O3", "-march=native"), ("-O3",))


def kernel_cache_dir() -> Path:
    """Where compiled kernels are kept: the user's cache folder (never a shared temp folder,
    whose files another user could plant)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "slmforge" / "kernels"


def _cpu_signature() -> str:
    """CPU model and flags: a -march=native library is only valid on the CPU it was built for
    (a cache folder in a network home is shared by machines of other CPUs)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text(errors="replace").splitlines() if info.is_file() else []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return platform.machine() + "|" + platform.processor() + "|" + "|".join(dict.fromkeys(wanted))


def compile_read_kernel(cache_dir: Path | None = None) -> tuple[ctypes.CDLL | None, str]:
    """The C kernel, compiled once per source, compiler and CPU; (None, why) if it cannot be."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None, "no C compiler (cc, gcc or clang) found: numpy kernel only"
    folder = cache_dir or kernel_cache_dir()
    errors = []
    for flags in COMPILE_FLAGS:
        key = hashlib.sha256("\0".join((C_KERNEL, compiler, *flags, _cpu_signature())).encode()).hexdigest()
        library = folder / f"read_kernel-{key[:16]}.so"
        if not library.is_file():
            try:
                error = _compile(compiler, flags, library)
            except OSError as exc:  # cache folder not writable, compiler not runnable
                error = str(exc)
            if error:
                errors.append(f"{compiler} {' '.join(flags)}: {error}")
                continue
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as exc:
            errors.append(f"loading {library}: {exc}")
            continue
        lib.slmforge_read_pass.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        lib.slmforge_read_pass.restype = ctypes.c_double
        return lib, ""
    return None, "C kernel unavailable (" + "; ".join(errors) + "): numpy kernel only"


def _compile(compiler: str, flags: tuple[str, ...], library: Path) -> str:
    """Build `library` under a temp name, then rename it (probes may run at once); error or ""."""
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as work:
        source, built = Path(work) / "read_kernel.c", Path(work) / library.name
        source.write_text(C_KERNEL)
        command = [compiler, *flags, "-shared", "-fPIC", "-pthread", "-o", str(built), str(source)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired as exc:
            return str(exc)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        os.replace(built, library)
    return ""
