"""Run one untrusted program (a HumanEval prompt + completion + its tests) where it can do no harm.

Isolation: `unshare --user --map-root-user --net --mount --pid --fork --kill-child` (unprivileged user
namespaces) around the interpreter running jail.py, which builds a new read-only root with only the
system's libraries and the interpreter, a tmpfs /box as cwd, HOME and TMPDIR, no network, resource
limits (address space, CPU seconds, file size, threads, open files), no capabilities left and a
seccomp filter that refuses every new process (threads are allowed).
Outside, this module keeps the wall clock and kills the whole process group (and with it the pid
namespace) when it runs out. Output goes to a file outside the box, capped by the file-size limit.

Where the namespaces cannot be made (no `unshare`, user namespaces disabled) it refuses with
SandboxUnavailableError: it never runs a program unsandboxed.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import UserError

UNSHARE = ("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child")
JAIL = Path(__file__).with_name("jail.py")
SETUP_FAILED = 125  # jail.py's exit status when it could not build the sandbox


class SandboxUnavailableError(UserError):
    """This host cannot isolate a program the way the sandbox requires; nothing was run."""


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wall_s: float = Field(10.0, gt=0, description="Wall-clock limit; the process group is killed after it.")
    cpu_s: int = Field(10, ge=1, description="CPU seconds (RLIMIT_CPU): a busy loop ends even on an idle host.")
    memory_bytes: int = Field(1 << 30, ge=64 << 20, description="Address space (RLIMIT_AS). HumanEval needs "
                              "tens of MB; 1 GiB keeps an allocation bomb from touching the host.")
    file_bytes: int = Field(4 << 20, ge=1 << 16, description="Largest file it may write (RLIMIT_FSIZE), its "
                            "output included.")
    box_bytes: int = Field(16 << 20, ge=1 << 20, description="Size of its tmpfs working folder.")
    max_processes: int = Field(16, ge=1, description="RLIMIT_NPROC (threads, where the kernel applies it: not "
                               "to uid 0); new processes are refused outright by jail.py's seccomp filter.")


class RunResult(BaseModel):
    passed: bool
    status: str = Field(description="passed | failed | timeout | error: the sandbox's own verdict.")
    exit_code: int | None
    seconds: float
    output: str = Field(description="The first 2,000 characters of its stdout and stderr.")


def binds() -> list[str]:
    """What the program may read: the system's libraries and this interpreter's prefix, no more."""
    prefix = os.path.realpath(sys.base_prefix)
    found = [p for p in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin") if os.path.lexists(p)]
    return found + ([prefix] if not prefix.startswith("/usr/") and prefix != "/usr" else [])


def interpreter() -> str:
    """The base interpreter (not a venv's): the venv and its packages stay out of reach."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@functools.cache
def isolation_problem() -> str | None:
    """Why this host cannot sandbox (None: it can), probed once by making the namespaces."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "the `unshare` command (util-linux) is not installed"
    done = subprocess.run([unshare, *UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return (f"`unshare {' '.join(UNSHARE)} true` failed ({done.stderr.strip() or done.returncode}): "
                "unprivileged user namespaces are off (sysctl kernel.unprivileged_userns_clone=1, or "
                "user.max_user_namespaces > 0; AppArmor's restrict_unprivileged_userns=0)")
    return None


def run_program(program: str, config: SandboxConfig | None = None) -> RunResult:
    """Run `program` in the sandbox; passed means it exited 0 after printing the closing marker."""
    config = config or SandboxConfig()
    if problem := isolation_problem():
        raise SandboxUnavailableError(f"HumanEval completions are run only in a sandbox, and {problem}; "
                                      "nothing was run")
    marker = secrets.token_hex(16)  # an early sys.exit(0) in a completion does not print it
    with tempfile.TemporaryDirectory(prefix="slmforge-sandbox-") as stage:
        Path(stage, "program.py").write_text(f"{program}\nprint({marker!r})\n", encoding="utf-8")
        os.mkdir(Path(stage, "root"))
        spec = {"root": f"{stage}/root", "program": f"{stage}/program.py", "binds": binds(), "python": interpreter(),
                **config.model_dump(exclude={"wall_s"})}
        command = [shutil.which("unshare"), *UNSHARE, interpreter(), "-I", "-S", "-B", str(JAIL), json.dumps(spec)]
        return _run(command, Path(stage, "output.txt"), config.wall_s, marker)


def _run(command: list[str], output: Path, wall_s: float, marker: str) -> RunResult:
    start = time.monotonic()
    with output.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
                                   start_new_session=True, cwd="/")
        try:
            code, timed_out = process.wait(timeout=wall_s), False
        except subprocess.TimeoutExpired:
            # The group holds unshare; its death kills the namespace's pid 1 and so all inside.
            os.killpg(process.pid, signal.SIGKILL)
            code, timed_out = process.wait(), True
    seconds = time.monotonic() - start
    with output.open("rb") as f:
        text = f.read(64 << 10).decode(errors="replace")
    if code == SETUP_FAILED and "sandbox setup failed" in text:
        raise SandboxUnavailableError(f"the sandbox could not be built: {text.strip()[-500:]}; nothing was run")
    passed = not timed_out and code == 0 and text.rstrip().endswith(marker)
    status = "timeout" if timed_out else "passed" if passed else "failed"
    return RunResult(passed=passed, status=status, exit_code=None if timed_out else code, seconds=round(seconds, 3),
                     output=text.replace(marker, "")[:2000])
