"""The worker's seccomp filter, compiled on the host with libseccomp.

The host builds the filter with ``pyseccomp`` (libseccomp through ctypes)
and exports the raw BPF program; the worker installs those bytes with one
``prctl`` call, so libseccomp need not be readable inside the sandbox.

The policy is default-allow with a deny list (EPERM) of what a gear has no
business doing and what kernel exploits typically need: running programs,
opening network sockets, new processes (threads stay allowed), namespaces,
tracing other processes, mounting, keyrings, BPF, perf, userfaultfd and
io_uring. ``clone3`` answers ENOSYS so the C library falls back to ``clone``,
whose flags a classic filter can inspect. Syscalls of other ABIs (x32, i386
on x86_64) are killed by libseccomp's architecture check.

Landlock does not cover file metadata, so the filter also refuses every way
to change it (mode, owner, times, extended attributes: a worker has no
reason to, and a setuid bit or a world-readable secret is how a confined
process hands power to someone else); System V IPC, whose objects live
outside any mount or Landlock rule; and the calls that act on another
process's limits, priority or scheduling (only ``pid 0``, "this process",
passes the argument check).

Signals get a second, small filter (:func:`build_signal_filter`): ``kill``,
``tgkill`` and the like may only name pid 0 or the worker's own pid. A
compiled filter cannot know that pid, so the program carries a placeholder
that the worker overwrites with its own pid before installing it. This keeps
a worker from signalling the engine or other processes even where the uid is
shared and Landlock (ABI < 6) cannot scope signals.
"""

from __future__ import annotations

import errno
import os
import platform
import socket
import struct
import sys
import tempfile
from functools import cache
from typing import Any

from gears_sdk.worker.confine import SELF_PID_PLACEHOLDER

CLONE_THREAD = 0x00010000
_CLONE_NAMESPACES = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}

#: Denied outright with EPERM.
DENIED = (
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
    "process_madvise", "pidfd_getfd", "kcmp", "unshare", "setns", "mount", "umount2",
    "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "mount_setattr", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "personality",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "quotactl", "swapon",
    "swapoff", "reboot", "syslog", "acct", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "lookup_dcookie", "vhangup", "iopl", "ioperm", "uselib", "nfsservctl",
    "socketpair",
)

#: File metadata: Landlock has no right for these, so they are refused whatever the path.
METADATA = (
    "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32",
    "utime", "utimes", "utimensat", "futimesat", "utimensat_time64",
    "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "removexattr", "lremovexattr", "fremovexattr", "removexattrat", "file_setattr",
)

#: System V IPC: its objects are keyed host-wide (outside an IPC namespace) and
#: guarded only by uid and mode bits; a gear needs none of it.
SYSV_IPC = (
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "semtimedop_time64", "msgget", "msgsnd", "msgrcv", "msgctl", "ipc",
)

#: Calls that act on the process named by argument 0; refused unless it is 0 (this process).
OTHER_PROCESS_ARG0 = (
    "prlimit64", "sched_setscheduler", "sched_setparam", "sched_setaffinity", "sched_setattr",
    "migrate_pages", "move_pages",
)

#: Signal calls whose argument 0 is a pid (or thread group): only 0 or the worker's own pid.
SIGNAL_ARG0 = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")

_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06

#: Syscalls newer than some libseccomp releases know by name; their numbers are
#: shared by every architecture's unified table (all numbers >= 424).
_NEW_SYSCALLS = {"fchmodat2": 452, "setxattrat": 463, "removexattrat": 466,
                 "file_setattr": 469}
_UNIFIED_TABLE_ARCHES = ("x86_64", "aarch64", "riscv64", "ppc64le", "s390x", "loongarch64")


class SeccompUnavailable(RuntimeError):
    """pyseccomp or libseccomp is missing, or could not build the filter."""


def build_filter(*, allow_unix_sockets: bool = True) -> bytes:
    """The worker's seccomp-BPF program as raw bytes.

    ``allow_unix_sockets`` keeps ``socket(AF_UNIX, ...)`` working; pass
    ``False`` when the worker shares the host's filesystem (no mount
    namespace), where a unix socket could reach host daemons.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as exc:
        raise SeccompUnavailable(f"pyseccomp/libseccomp is not usable: {exc}") from None
    eperm = sc.ERRNO(errno.EPERM)
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED:
        _add(filt, eperm, name)
    _add_process_guards(sc, filt, eperm)
    if allow_unix_sockets:
        _add(filt, eperm, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    else:
        _add(filt, eperm, "socket")
    _add(filt, sc.ERRNO(errno.ENOSYS), "clone3")
    # clone: only threads, and never with a namespace flag
    _add(filt, eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    for flag in _CLONE_NAMESPACES.values():
        _add(filt, eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as fh:
        filt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def _add_process_guards(sc: Any, filt: Any, eperm: int) -> None:
    """Metadata changes, SysV IPC, and acting on another process's limits or scheduling."""
    for name in (*METADATA, *SYSV_IPC, "pidfd_send_signal"):
        _add_required(sc, filt, eperm, name)
    for name in OTHER_PROCESS_ARG0:
        _add_required(sc, filt, eperm, name, sc.Arg(0, sc.NE, 0))
    # setpriority(which, who, prio) and ioprio_set(which, who, prio): only this process
    for name in ("setpriority", "ioprio_set"):
        _add_required(sc, filt, eperm, name, sc.Arg(1, sc.NE, 0))
    _add_required(sc, filt, eperm, "setpriority", sc.Arg(0, sc.NE, 0))  # PRIO_PROCESS only
    _add_required(sc, filt, eperm, "ioprio_set", sc.Arg(0, sc.NE, 1))  # IOPRIO_WHO_PROCESS


def _syscall_number(sc: Any, name: str) -> int | None:
    """The native number of ``name``; None when this architecture has no such call."""
    number = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    if number == -1:  # a name this libseccomp does not know
        if name in _NEW_SYSCALLS and platform.machine() in _UNIFIED_TABLE_ARCHES:
            return _NEW_SYSCALLS[name]
        raise SeccompUnavailable(f"libseccomp does not know the syscall {name!r}")
    # libseccomp's pseudo numbers (below -1) name calls absent from this architecture
    return number if number >= 0 else None


def _add_required(sc: Any, filt: Any, action: int, name: str, *args: object) -> None:
    """Add a rule that must hold: any failure makes the whole filter unavailable."""
    number = _syscall_number(sc, name)
    if number is None:
        return
    try:
        filt.add_rule(action, number, *args)
    except (ValueError, OSError, RuntimeError) as exc:
        raise SeccompUnavailable(f"could not add the seccomp rule for {name}: {exc}") from exc


def _add(filt: object, action: int, name: str, *args: object) -> None:
    try:
        filt.add_rule(action, name, *args)  # type: ignore[attr-defined]
    except (ValueError, OSError, RuntimeError) as exc:
        # A syscall this libseccomp or architecture does not know cannot be called
        # through it either; anything else is a real failure.
        if "socket" in name or "clone" in name or name.startswith("exec"):
            raise SeccompUnavailable(f"could not add the seccomp rule for {name}: {exc}") from exc


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_signal_filter() -> bytes:
    """The signal filter: calls in :data:`SIGNAL_ARG0` only for pid 0 or the placeholder.

    Assembled by hand because one libseccomp rule cannot compare an argument
    twice. It checks no architecture: the main filter, installed first, kills
    every foreign one, and the kernel applies the strictest verdict.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as exc:
        raise SeccompUnavailable(f"pyseccomp/libseccomp is not usable: {exc}") from None
    numbers = [n for n in (_syscall_number(sc, name) for name in SIGNAL_ARG0) if n is not None]
    # seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] -- pids are the low 32 bits
    arg0 = 16 if sys.byteorder == "little" else 20
    count = len(numbers)
    prog = [_insn(_BPF_LD_W_ABS, 0)]
    for i, nr in enumerate(numbers):  # match: jump to the pid check after "allow"
        prog.append(_insn(_BPF_JEQ_K, nr, jt=count - i, jf=0))
    prog += [
        _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
        _insn(_BPF_LD_W_ABS, arg0),
        _insn(_BPF_JEQ_K, 0, jt=2, jf=0),
        _insn(_BPF_JEQ_K, SELF_PID_PLACEHOLDER, jt=1, jf=0),
        _insn(_BPF_RET_K, _SECCOMP_RET_ERRNO | errno.EPERM),
        _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
    ]
    return b"".join(prog)


@cache
def cached_signal_filter() -> bytes:
    """:func:`build_signal_filter`, built once per process."""
    return build_signal_filter()


@cache
def cached_filter(allow_unix_sockets: bool = True) -> bytes:
    """:func:`build_filter`, built once per process."""
    return build_filter(allow_unix_sockets=allow_unix_sockets)


def available() -> tuple[bool, str]:
    """Whether the filter can be built here, and why not."""
    if not os.path.exists("/proc/self/status"):
        return False, "not Linux"
    try:
        cached_filter()
        cached_signal_filter()
    except SeccompUnavailable as exc:
        return False, str(exc)
    return True, "seccomp filter compiled with libseccomp"
