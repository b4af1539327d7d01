"""Hostile gears for the resource-limit suite: each tries to hold or burn more than granted.

``gear_on_event`` runs the abuse named in ``event["abuse"]`` and reports what
happened in ``traits.outcome`` (``{"ok": True, ...}`` when the abuse got
through, ``{"ok": False, "errno": ...}`` when the kernel refused it). Abuses
the kernel answers by killing the worker never return.
"""

HOSTILE_LIMITS_SOURCE = r'''
import ctypes, errno, os, sys, threading, time

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.memfd_create.argtypes = [ctypes.c_char_p, ctypes.c_uint]
MIB = 1024 * 1024
IPC_PRIVATE, IPC_CREAT = 0, 0o1000
_held = []
_spin = {"n": 0}


def _errno():
    code = ctypes.get_errno()
    return {"ok": False, "errno": errno.errorcode.get(code, str(code))}


def sysv_shm(event):
    """Fill segments and detach them: detached segments count in no process's rlimits."""
    total = 0
    for _ in range(event["mib"] // 16):
        shmid = libc.shmget(IPC_PRIVATE, 16 * MIB, IPC_CREAT | 0o600)
        if shmid < 0:
            out = _errno()
            out["detail"] = total
            return out
        addr = libc.shmat(shmid, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            out = _errno()
            out["detail"] = total
            return out
        ctypes.memset(addr, 0x5A, 16 * MIB)
        libc.shmdt(addr)
        total += 16
    return {"ok": True, "detail": total}


def memfd(event):
    """write() into memfds: pages that are never mapped, so RLIMIT_AS does not see them
    (each memfd stays under RLIMIT_FSIZE)."""
    chunk = b"\x5a" * MIB
    total = 0
    for _ in range(event["mib"] // 15):
        fd = libc.memfd_create(b"hog", 0)
        if fd < 0:
            out = _errno()
            out["detail"] = total
            return out
        _held.append(fd)
        for _ in range(15):
            os.write(fd, chunk)
            total += 1
    return {"ok": True, "detail": total}


def threads(event):
    """A thread bomb (fork is refused by seccomp; threads are tasks too)."""
    stop = threading.Event()
    started = 0
    try:
        for _ in range(event["count"]):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as exc:
        return {"ok": False, "error": "RuntimeError", "message": str(exc), "detail": started}
    finally:
        stop.set()
    return {"ok": True, "detail": started}


def _spinner():
    while True:
        _spin["n"] += 1


def spin_in_background(event):
    """Leave a thread burning CPU after the call returns."""
    if not _spin["n"]:
        threading.Thread(target=_spinner, daemon=True).start()
    seen, waited = _spin["n"], 0
    while _spin["n"] == seen and waited < 3000:  # let it run (it needs the GIL)
        time.sleep(0.001)
        waited += 1
    return {"ok": True, "detail": _spin["n"]}


def flood(event, ctx):
    """Terminal escape sequences and control characters, on stderr and through ctx.log."""
    nasty = "\x1b[2J\x1b]0;owned\x07\x1b[31mred\x1b[0m \x9b1m\x00\x08\x7f\r end"
    for i in range(event["lines"]):
        print(nasty, i, file=sys.stderr)
    for i in range(event["logs"]):
        ctx.log.info(nasty + " log %d" % i)
    sys.stderr.flush()
    return {"ok": True}


def fill_data(event):
    """Write ``mib`` MiB into the data dir, in files under RLIMIT_FSIZE."""
    chunk = b"\x5a" * MIB
    written = 0
    try:
        for n in range(0, event["mib"], 8):
            with open(os.path.join(event["data"], "fill%d.bin" % n), "wb") as fh:
                for _ in range(min(8, event["mib"] - n)):
                    fh.write(chunk)
                    fh.flush()
                    written += 1
                os.fsync(fh.fileno())
    except OSError as exc:
        if event.get("raise"):
            raise
        return {"ok": False, "errno": errno.errorcode.get(exc.errno, str(exc.errno)),
                "detail": written}
    return {"ok": True, "detail": written}


def many_files(event):
    """Create ``count`` empty files in the data dir."""
    made = 0
    try:
        folder = os.path.join(event["data"], "many")
        os.makedirs(folder, exist_ok=True)
        for i in range(event["count"]):
            with open(os.path.join(folder, str(i)), "wb"):
                pass
            made += 1
    except OSError as exc:
        return {"ok": False, "errno": errno.errorcode.get(exc.errno, str(exc.errno)),
                "detail": made}
    return {"ok": True, "detail": made}


def control(event):
    return {"ok": True, "detail": "alive"}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    abuse = globals()[event["abuse"]]
    outcome = abuse(event, ctx) if event["abuse"] == "flood" else abuse(event)
    return {"set": {"traits.outcome": outcome}}
'''

#: imported at load time: the gear's import sleeps past its start deadline
SLOW_IMPORT_SOURCE = r'''
import time
time.sleep(8)


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return None
'''

#: the gear's import holds memfd pages beyond its limit: import-time code is inside the group
HOG_AT_IMPORT_SOURCE = r'''
import ctypes, os

_libc = ctypes.CDLL(None, use_errno=True)
_held = []
for _ in range(40):
    _fd = _libc.memfd_create(b"hog", 0)
    _held.append(_fd)
    for _ in range(15):
        os.write(_fd, b"x" * (1024 * 1024))


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return None
'''
