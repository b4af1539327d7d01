"""The worker's own confinement steps: identity, seccomp, parent death.

The host decides *what* the confinement is (uid, Landlock paths, the seccomp
program, which it compiles with libseccomp); the worker applies it to itself
with plain ``ctypes`` calls into libc, so nothing beyond the interpreter has
to be present in the sandbox. Every step raises on failure: a worker that
cannot confine itself refuses to load the gear.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: Stands for the worker's own pid in the host-built signal filter (above any pid_max).
SELF_PID_PLACEHOLDER = 0x7FFF_FFF0
_BPF_JEQ_K = 0x15

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg2: object = 0, arg3: int = 0) -> int:
    # prctl reads its arguments as unsigned longs; widen them explicitly so the
    # kernel never sees stray upper bits (it rejects non-zero unused args).
    a2 = arg2 if not isinstance(arg2, int) else ctypes.c_ulong(arg2)
    return int(_libc.prctl(ctypes.c_int(option), a2, ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                           ctypes.c_ulong(0)))


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the process that started us dies."""
    _check(_prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL)), "PR_SET_PDEATHSIG")


def no_new_privs() -> None:
    """Forbid privilege gain through exec (set-uid files, file capabilities)."""
    _check(_prctl(_PR_SET_NO_NEW_PRIVS, 1), "PR_SET_NO_NEW_PRIVS")


def become(uid: int, gid: int) -> None:
    """Switch to ``uid``/``gid`` for good (real, effective and saved), dropping groups.

    Changing from uid 0 to another uid clears every capability, and the
    kernel then counts RLIMIT_NPROC against the dedicated uid.
    """
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(f"could not switch to uid {uid} gid {gid}")
    # a credential change resets the parent-death signal
    die_with_parent()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capabilities() -> list[int] | None:
    """Effective, permitted and inheritable sets (both words); None off Linux."""
    if not hasattr(_libc, "capget"):
        return None
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return [v for d in data for v in (d.effective, d.permitted, d.inheritable)]


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (bubblewrap fills the last)."""
    if _capabilities() is None:
        return
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def assert_unprivileged() -> None:
    """Refuse to go on as uid or gid 0, in group 0, or holding any capability.

    The host plans an unprivileged identity at every level; this is the
    worker's own check that it got one before any gear code runs, so a plan
    that went wrong fails the start instead of running the gear as root.
    """
    uids, gids = os.getresuid(), os.getresgid()
    if 0 in uids or 0 in gids or 0 in os.getgroups():
        raise PermissionError(f"refusing to run gear code as root (uids {uids}, gids {gids})")
    if any(_capabilities() or ()):
        raise PermissionError("refusing to run gear code with capabilities")


def with_own_pid(program: bytes) -> bytes:
    """``program`` with its one :data:`SELF_PID_PLACEHOLDER` comparison naming this process."""
    out = bytearray(program)
    found = 0
    for at in range(0, len(out) - 7, 8):
        code, k = struct.unpack_from("=H", out, at)[0], struct.unpack_from("=I", out, at + 4)[0]
        if code == _BPF_JEQ_K and k == SELF_PID_PLACEHOLDER:
            struct.pack_into("=I", out, at + 4, os.getpid())
            found += 1
    if found != 1:
        raise ValueError(f"the signal filter names its own pid {found} times, not once")
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(program: bytes) -> None:
    """Install a compiled seccomp-BPF ``program`` (8 bytes per instruction).

    Seccomp filters are inherited and cannot be removed; ``no_new_privs`` is
    set first because an unprivileged process may only install a filter then.
    """
    if not program or len(program) % 8:
        raise ValueError("the seccomp program is empty or not a whole number of instructions")
    no_new_privs()
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog)),
           "PR_SET_SECCOMP")
