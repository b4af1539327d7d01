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
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from functools import cache

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


def _add(filt: object, action: int, name: str, *args: object) -> None:
    try:
        filt.add_rule(action, name, *args)  # type: ignore[attr-defined]
    except (ValueError, OSError, RuntimeError) as exc:
        # A syscall this libseccomp or architecture does not know cannot be called
        # through it either; anything else is a real failure.
        if "socket" in name or "clone" in name or name.startswith("exec"):
            raise SeccompUnavailable(f"could not add the seccomp rule for {name}: {exc}") from exc


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
    except SeccompUnavailable as exc:
        return False, str(exc)
    return True, "seccomp filter compiled with libseccomp"
