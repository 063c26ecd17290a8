"""Hardware identity: what the figures were measured on, and a stable id to group them by."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import psutil

from tasks.store.hashing import sha256_json

_ISA_FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma", "f16c", "amx_tile", "neon", "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return info
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _gpu() -> dict[str, str]:
    """GPU name, memory and driver from nvidia-smi when present."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = "--query-gpu=name,memory.total,driver_version"
    done = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return {}
    name, memory, driver = (part.strip() for part in done.stdout.splitlines()[0].split(","))
    return {"gpu_name": name, "gpu_memory": memory, "gpu_driver": driver}


def llama_system_info() -> str:
    """llama.cpp's own report of the CPU features its kernels use."""
    import llama_cpp  # llama.cpp's binding: native library, only where a model runs

    return llama_cpp.llama_print_system_info().decode(errors="replace").strip()


def hardware_facts() -> dict[str, str]:
    """Everything that identifies the measuring machine (values are strings for MLflow)."""
    cpu = _cpuinfo()
    flags = set((cpu.get("flags") or cpu.get("Features") or "").split())
    facts = {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_arch": platform.machine(),
        "cpu_physical_cores": str(psutil.cpu_count(logical=False) or 0),
        "cpu_logical_cores": str(os.cpu_count() or 0),
        "cpu_isa": ",".join(sorted(f for f in _ISA_FLAGS if f in flags)),
        "ram_bytes": str(psutil.virtual_memory().total),
        "os": f"{platform.system()} {platform.release()}",
        **_gpu(),
    }
    facts["hardware_id"] = hardware_id(facts)
    return facts


def hardware_id(facts: dict[str, str]) -> str:
    """Stable short id: same CPU model, core count, ISA, RAM size (GiB) and GPU -> same id."""
    stable = {
        key: facts.get(key, "")
        for key in ("cpu_model", "cpu_arch", "cpu_logical_cores", "cpu_isa", "gpu_name")
    }
    stable["ram_gib"] = str(round(int(facts.get("ram_bytes", "0")) / 2**30))
    return "hw-" + sha256_json(stable)[:12]
