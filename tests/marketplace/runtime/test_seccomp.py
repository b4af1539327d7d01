"""The seccomp programs on their own, as a kernel without Landlock signal scoping sees them.

A forked child installs exactly what a worker installs (the main filter, then
the signal filter naming its own pid) and no Landlock, then reports what each
call answered; the parent stands in for the engine.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import tempfile
from collections.abc import Callable

import pytest

from gears_sdk.worker import confine
from marketplace.runtime import seccomp

pytestmark = pytest.mark.skipif(not seccomp.available()[0], reason="no seccomp here")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS = {"kill": 62, "tgkill": 234, "pidfd_open": 434, "prlimit64": 302, "setpriority": 141,
       "sched_setaffinity": 203, "shmget": 29}


def _call(name: str, *args: object) -> str:
    ret = libc.syscall(SYS[name], *args)
    return "ok" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def _in_confined_child(probe: Callable[[int], dict[str, str]]) -> dict[str, str]:
    """Run ``probe(engine_pid)`` in a child confined by the worker's seccomp programs."""
    engine = os.getpid()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(rfd)
            confine.install_seccomp(seccomp.build_filter(allow_unix_sockets=False))
            confine.install_seccomp(confine.with_own_pid(seccomp.build_signal_filter()))
            os.write(wfd, json.dumps(probe(engine)).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return dict(json.loads(out))


def _signals(engine: int) -> dict[str, str]:
    me = os.getpid()
    return {"kill engine": _call("kill", engine, 0), "kill all": _call("kill", -1, 0),
            "kill engine group": _call("kill", -os.getpgid(engine), 0),
            "tgkill engine": _call("tgkill", engine, engine, 0),
            "pidfd_open engine": _call("pidfd_open", engine, 0),
            "kill self": _call("kill", me, 0), "kill own group": _call("kill", 0, 0),
            "tgkill self": _call("tgkill", me, me, 0), "pidfd_open self": _call("pidfd_open", me, 0)}


def test_signals_reach_only_the_worker_itself() -> None:
    out = _in_confined_child(_signals)
    assert out == {"kill engine": "EPERM", "kill all": "EPERM", "kill engine group": "EPERM",
                   "tgkill engine": "EPERM", "pidfd_open engine": "EPERM", "kill self": "ok",
                   "kill own group": "ok", "tgkill self": "ok", "pidfd_open self": "ok"}


def _other_processes(engine: int) -> dict[str, str]:
    old = (ctypes.c_uint64 * 2)()
    mask = ctypes.c_uint64(1)
    with tempfile.NamedTemporaryFile() as fh:
        try:
            os.chmod(fh.name, 0o4755)
            chmod = "ok"
        except OSError as exc:
            chmod = errno.errorcode[exc.errno or 0]
    return {"prlimit engine": _call("prlimit64", engine, 7, None, ctypes.byref(old)),
            "prlimit self": _call("prlimit64", 0, 7, None, ctypes.byref(old)),
            "renice engine": _call("setpriority", 0, engine, 0),
            "renice self": _call("setpriority", 0, 0, os.getpriority(os.PRIO_PROCESS, 0)),
            "affinity engine": _call("sched_setaffinity", engine, 8, ctypes.byref(mask)),
            "shmget": _call("shmget", 0, 4096, 0o1600), "chmod": chmod}


def test_other_processes_metadata_and_sysv_are_refused_by_seccomp_alone() -> None:
    out = _in_confined_child(_other_processes)
    assert out == {"prlimit engine": "EPERM", "prlimit self": "ok", "renice engine": "EPERM",
                   "renice self": "ok", "affinity engine": "EPERM", "shmget": "EPERM",
                   "chmod": "EPERM"}


def test_signal_filter_names_its_placeholder_exactly_once() -> None:
    program = seccomp.build_signal_filter()
    assert len(program) % 8 == 0
    assert confine.with_own_pid(program) != program
    with pytest.raises(ValueError):
        confine.with_own_pid(confine.with_own_pid(program))
