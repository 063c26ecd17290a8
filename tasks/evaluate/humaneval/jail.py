"""The inside of the sandbox: run by the interpreter as pid 1 of fresh user, mount, network and pid
namespaces (`unshare`, see sandbox.py), as root *of that user namespace only*. Standard library only
(it runs with -I -S). It builds a new root and hands it to the untrusted program, which can then see:

- a read-only root tmpfs holding read-only binds of /usr, /lib*, /bin, /sbin and the interpreter's own
  prefix (nothing else: no /etc, /home, /root, /tmp, /work, /proc, the store, the user's files);
- /dev/null, /dev/zero, /dev/urandom;
- /box: a small tmpfs, its cwd, HOME and TMPDIR, gone with the namespace.

Before exec it sets the resource limits and drops every capability for good (bounding set, securebits
NOROOT so uid 0 regains none on exec, no_new_privs): without CAP_SYS_ADMIN the program cannot remount
the binds writable, without CAP_SYS_CHROOT it cannot leave the root. The network namespace has only a
loopback that is down: no address, 127.0.0.1 included, is reachable.

Exit status 125 with a line on stderr: the sandbox could not be built (the caller refuses to go on).
"""

import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
ST_KEPT = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: 1024, 2048: 2048, 4096: 1 << 21}  # statvfs -> mount flag
LIBC = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if LIBC.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")


def read_only(target):
    # A remount must keep the flags the kernel locked on the original mount (nosuid, nodev, atime...).
    found = os.statvfs(target).f_flag
    kept = sum(flag for st, flag in ST_KEPT.items() if found & st)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def build_root(root, binds, box_bytes):
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host's mounts
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for source in binds:
        target = root + source
        if os.path.islink(source):  # merged /usr: /bin -> usr/bin
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(source), target)
        elif os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
            mount(source, target, None, MS_BIND | MS_REC)
            read_only(target)
    os.makedirs(root + "/dev")
    for name in ("null", "zero", "urandom"):
        open(f"{root}/dev/{name}", "w").close()
        mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    os.makedirs(root + "/box")
    mount("tmpfs", root + "/box", "tmpfs", MS_NOSUID | MS_NODEV, f"size={box_bytes},mode=700")


def drop_capabilities():
    PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 24, 28, 38
    if LIBC.prctl(PR_SET_SECUREBITS, 0xCF, 0, 0, 0) != 0:  # NOROOT, NO_SETUID_FIXUP, no ambient: all locked
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS)")
    for cap in range(64):
        LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last cap this kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if LIBC.capset(header, (ctypes.c_uint32 * 6)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


# No child processes (a fork bomb would otherwise be bounded by RLIMIT_NPROC, which the kernel does
# not apply to uid 0, the uid this runs as when slmforge runs as root): a seccomp filter answers fork,
# vfork and clone without CLONE_THREAD with EPERM, and clone3 (whose flags it cannot read) with ENOSYS,
# on which libc falls back to clone for threads. Any other syscall ABI (x32, i386) kills the process.
ARCHES = {"x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "clone": 56}),
          "aarch64": (0xC00000B7, {"fork": 0xFFFFFFFF, "vfork": 0xFFFFFFFF, "clone": 220})}
CLONE3, CLONE_THREAD, EPERM, ENOSYS = 435, 0x10000, 1, 38
ALLOW, ERRNO, KILL = 0x7FFF0000, 0x00050000, 0x80000000


def no_new_processes():
    arch, nr = ARCHES[os.uname().machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    program = [
        (ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, KILL),  # 0-2: native ABI only
        (ld, 0, 0, 0), (jge, 9, 0, 0x40000000),  # 3-4: syscall number; x32 numbers -> 14
        (jeq, 6, 0, nr["fork"]), (jeq, 5, 0, nr["vfork"]), (jeq, 5, 0, CLONE3), (jeq, 0, 2, nr["clone"]),  # 5-8
        (ld, 0, 0, 16), (jset, 0, 1, CLONE_THREAD),  # 9-10: clone's flags: a thread is fine
        (ret, 0, 0, ALLOW), (ret, 0, 0, ERRNO | EPERM), (ret, 0, 0, ERRNO | ENOSYS), (ret, 0, 0, KILL),  # 11-14
    ]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(program))(*[Filter(*row) for row in program])
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    if LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(Program(len(program), filters)), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def limit(spec):
    for name, value in (("RLIMIT_AS", spec["memory_bytes"]), ("RLIMIT_CPU", spec["cpu_s"]),
                        ("RLIMIT_FSIZE", spec["file_bytes"]), ("RLIMIT_NPROC", spec["max_processes"]),
                        ("RLIMIT_NOFILE", 64), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))


def main():
    spec = json.loads(sys.argv[1])
    try:
        root = spec["root"]
        build_root(root, spec["binds"], spec["box_bytes"])
        with open(spec["program"], "rb") as src, open(root + "/box/program.py", "wb") as dst:
            dst.write(src.read())
        read_only(root)
        os.chroot(root)
        os.chdir("/box")
        drop_capabilities()
        limit(spec)
        no_new_processes()
    except (OSError, KeyError) as exc:
        print(f"sandbox setup failed: {exc}", file=sys.stderr)
        sys.exit(125)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/box", "TMPDIR": "/box", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    os.execve(spec["python"], [spec["python"], "-I", "-S", "-B", "/box/program.py"], env)


if __name__ == "__main__":  # run as a script by sandbox.py; importing it does nothing
    main()
