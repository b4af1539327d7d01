"""A deliberately hostile gear for the escape suite.

``gear_on_event`` performs the attack named in ``event["attack"]`` and
reports what happened in ``traits.outcome``: ``{"ok": True, "detail": ...}``
when the attack worked, ``{"ok": False, "errno": "EPERM", ...}`` when the
kernel refused it. Attacks that cannot be caught (CPU loops) simply never
return.
"""

HOSTILE_SOURCE = r'''
import ctypes, errno, os, socket, subprocess

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def _refused(exc):
    code = getattr(exc, "errno", None)
    return {"ok": False, "error": type(exc).__name__,
            "errno": errno.errorcode.get(code, str(code)) if code else None,
            "message": str(exc)[:300]}


def _raw(ret):
    if ret < 0:
        return {"ok": False, "errno": errno.errorcode.get(ctypes.get_errno(), "?")}
    return {"ok": True, "detail": int(ret)}


def read_file(event):
    with open(event["path"], "rb") as fh:
        return {"ok": True, "detail": fh.read(4096).decode("utf-8", "replace")}


def write_file(event):
    with open(event["path"], "w") as fh:
        fh.write("pwned")
    return {"ok": True, "detail": event["path"]}


def environ(event):
    return {"ok": True, "detail": dict(os.environ)}


def tcp(event):
    socket.create_connection(("127.0.0.1", event["port"]), timeout=1).close()
    return {"ok": True}


def udp(event):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"pwned", ("127.0.0.1", event["port"]))
    return {"ok": True}


def raw_socket(event):
    return _raw(libc.syscall(41, socket.AF_INET, socket.SOCK_STREAM, 0))


def system(event):
    status = os.system("/bin/sh -c 'echo pwned'")
    return {"ok": status == 0, "detail": status, "errno": "status %s" % status}


def popen(event):
    subprocess.run(["/bin/sh", "-c", "echo pwned"], check=True)
    return {"ok": True}


def execv(event):
    os.execv("/bin/sh", ["/bin/sh", "-c", "echo pwned"])


def fork_bomb(event):
    children = 0
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        children += 1
    return {"ok": True, "detail": children}


def memory_bomb(event):
    hog = bytearray(2 * 1024 ** 3)
    return {"ok": True, "detail": len(hog)}


def cpu_loop(event):
    while True:
        pass


def fd_bomb(event):
    fds = []
    try:
        for _ in range(100000):
            fds.extend(os.pipe())
    except OSError as exc:
        out = _refused(exc)
        out["detail"] = len(fds)
        return out
    finally:
        for fd in fds:
            os.close(fd)
    return {"ok": True, "detail": len(fds)}


def fsize_bomb(event):
    chunk = b"x" * (1024 * 1024)
    written = 0
    try:
        with open("/data/big.bin" if os.path.isdir("/data") else event["big"], "wb") as fh:
            for _ in range(64):
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
    except OSError as exc:
        out = _refused(exc)
        out["detail"] = written
        return out
    return {"ok": True, "detail": written}


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def process_vm_readv(event):
    buf = ctypes.create_string_buffer(64)
    local = _IOVec(ctypes.cast(buf, ctypes.c_void_p), 64)
    remote = _IOVec(0x400000, 64)
    return _raw(libc.syscall(310, event["pid"], ctypes.byref(local), 1,
                             ctypes.byref(remote), 1, 0))


def unshare_user(event):
    return _raw(libc.unshare(0x10000000))


def ptrace(event):
    return _raw(libc.ptrace(16, event["pid"], 0, 0))  # PTRACE_ATTACH


def control(event):
    path = os.path.join(event.get("data") or "/data", "control.txt")
    if os.path.isdir("/data"):
        path = "/data/control.txt"
    with open(path, "w") as fh:
        fh.write("mine")
    with open(path) as fh:
        return {"ok": True, "detail": fh.read()}


def thread(event):
    import threading
    box = []
    t = threading.Thread(target=lambda: box.append(1))
    t.start()
    t.join()
    return {"ok": True, "detail": len(box)}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    attack = globals()[event["attack"]]
    try:
        outcome = attack(event)
    except MemoryError as exc:
        outcome = {"ok": False, "error": "MemoryError"}
    except OSError as exc:
        outcome = _refused(exc)
    except subprocess.CalledProcessError as exc:
        outcome = {"ok": False, "error": "CalledProcessError", "message": str(exc)}
    return {"set": {"traits.outcome": outcome}}
'''
