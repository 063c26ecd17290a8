"""How much memory this process may still use: the host's free memory or its cgroup's room, whichever is less.

A container's limit is not in /proc/meminfo: a 2 GiB cgroup on a 24 GiB host sees 22 GiB "available"
there and is killed at 2 GiB. So the room left under every cgroup level above this process (v2:
`memory.max - memory.current`; v1: `memory.limit_in_bytes - memory.usage_in_bytes`) counts too.
Pure: every path comes from the `proc` folder given (tests pass a fake /proc and /sys in tmp_path).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

# v1 writes "no limit" as the largest page-aligned int64; anything above 2**60 bytes is no limit.
_UNLIMITED = 2**60


@dataclass(frozen=True)
class MemoryLimit:
    """What this process may use now, and where the figure came from (for error messages)."""

    available_bytes: int
    host_available_bytes: int
    cgroup_limit_bytes: int | None = None
    cgroup_usage_bytes: int | None = None
    cgroup_path: str | None = None

    def describe(self) -> str:
        host = f"host MemAvailable {gib(self.host_available_bytes)}"
        if self.cgroup_limit_bytes is None:
            return f"{gib(self.available_bytes)} ({host}, no cgroup memory limit)"
        return (f"{gib(self.available_bytes)} (cgroup {self.cgroup_path} limit {gib(self.cgroup_limit_bytes)}, "
                f"{gib(self.cgroup_usage_bytes or 0)} in use; {host})")


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def read_memory_limit(proc: Path = Path("/proc")) -> MemoryLimit:
    """min(host MemAvailable, the tightest cgroup's limit minus its usage) for this process."""
    host = _mem_available(proc / "meminfo")
    tightest: tuple[int, int, int, str] | None = None  # (room, limit, usage, path)
    for folder in _cgroup_memory_folders(proc):
        limit_usage = _limit_and_usage(folder)
        if limit_usage is None:
            continue
        limit, usage = limit_usage
        room = max(limit - usage, 0)
        if tightest is None or room < tightest[0]:
            tightest = (room, limit, usage, str(folder))
    if tightest is None:
        return MemoryLimit(available_bytes=host, host_available_bytes=host)
    room, limit, usage, path = tightest
    return MemoryLimit(available_bytes=min(host, room), host_available_bytes=host, cgroup_limit_bytes=limit,
                       cgroup_usage_bytes=usage, cgroup_path=path)


def _mem_available(meminfo: Path) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{meminfo} has no MemAvailable line (Linux < 3.14?)")


def _limit_and_usage(folder: Path) -> tuple[int, int] | None:
    """(limit, usage) of one cgroup folder, v2 or v1 file names; None when it sets no limit."""
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory.limit_in_bytes", "memory.usage_in_bytes")):
        limit_file, usage_file = folder / limit_name, folder / usage_name
        if not (limit_file.is_file() and usage_file.is_file()):
            continue
        text = limit_file.read_text().strip()
        if text == "max" or int(text) >= _UNLIMITED:
            return None
        usage = int(usage_file.read_text().strip())
        # Page cache nobody maps (files just written or read: the dequantized weights) is dropped by the
        # kernel before it kills anything: room, not use. Mapped file pages (a loaded model) stay in use.
        stat = _stats(folder / "memory.stat")
        cache = stat.get("total_cache", stat.get("file", 0))
        mapped = stat.get("total_mapped_file", stat.get("file_mapped", 0))
        return int(text), max(usage - max(cache - mapped, 0), 0)
    return None


def _stats(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {}
    pairs = (line.split()[:2] for line in path.read_text().splitlines() if len(line.split()) >= 2)
    return {key: int(value) for key, value in pairs if value.isdigit()}


def _cgroup_memory_folders(proc: Path) -> list[Path]:
    """This process's memory cgroup folder and every ancestor up to its mount (each may set a limit)."""
    mounts = _memory_mounts(proc / "self" / "mountinfo")
    folders: list[Path] = []
    for line in (proc / "self" / "cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        version = "v2" if hierarchy == "0" and controllers == "" else "v1"
        if version == "v1" and "memory" not in controllers.split(","):
            continue
        for mount_root, mount_point in mounts.get(version, []):
            relative = path[len(mount_root):] if path.startswith(mount_root) else path
            folder = mount_point / relative.strip("/")
            while True:
                folders.append(folder)
                if folder == mount_point:
                    break
                folder = folder.parent
    return folders


def _memory_mounts(mountinfo: Path) -> dict[str, list[tuple[str, Path]]]:
    """{"v1"/"v2": [(root inside the hierarchy, mount point)]} of the cgroup filesystems holding memory."""
    found: dict[str, list[tuple[str, Path]]] = {"v1": [], "v2": []}
    if not mountinfo.is_file():
        return found
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fs_type, _, options = line.split(" - ", 1)[1].split(" ", 2)
        if fs_type == "cgroup2":
            found["v2"].append((fields[3], Path(fields[4])))
        elif fs_type == "cgroup" and "memory" in options.split()[-1].split(","):
            found["v1"].append((fields[3], Path(fields[4])))
    return found


def killed_by_signal_message(returncode: int, what: str, limit: MemoryLimit | None = None) -> str | None:
    """The sentence to show when a child exited by a signal (negative return code), else None.

    SIGKILL nobody asked for is almost always the kernel's OOM killer: say so, with the limit it hit.
    """
    if returncode >= 0:
        return None
    number = -returncode
    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
    if number != signal.SIGKILL:
        return f"{what} was killed by {name}."
    where = f": limit {limit.describe()}" if limit is not None else ""
    return (f"{what} was killed by SIGKILL, probably out of memory{where}. Free memory, raise the limit, or "
            "run `slmforge plan CONFIG` to see what each step needs.")
