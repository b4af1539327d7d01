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
        with open(_data("big.bin"), "wb") as fh:
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


def _data(name):
    # the data dir is the worker's working directory at every level
    return name


def whoami(event):
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.syscall(125, header, data) != 0:  # capget
        return _raw(-1)
    return {"ok": True, "detail": {"uid": list(os.getresuid()), "gid": list(os.getresgid()),
                                   "groups": os.getgroups(), "caps": list(data)}}


def setuid_copy(event):
    """Copy the interpreter into the data dir byte by byte, then make it setuid."""
    import sys
    target = _data("suid-python")
    with open(sys.executable, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read(1 << 16))
    os.chmod(target, 0o4755)
    return {"ok": True, "detail": oct(os.stat(target).st_mode)}


def metadata(event):
    """Change the mode, owner, times or extended attributes of ``event["path"]``."""
    path, how = _data(event["path"]), event["how"]
    if event.get("create"):
        with open(path, "w") as fh:
            fh.write("mine")
    if how == "chmod":
        os.chmod(path, 0o777)
    elif how == "fchmod":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o777)
        finally:
            os.close(fd)
    elif how == "fchmodat2":
        ret = libc.syscall(452, -100, path.encode(), 0o777, 0)
        return _raw(ret)
    elif how == "chown":
        os.chown(path, os.getuid(), os.getgid())
    elif how == "utime":
        os.utime(path, (1, 1))
    elif how == "setxattr":
        os.setxattr(path, "user.gears", b"pwned")
    elif how == "removexattr":
        os.removexattr(path, "user.gears")
    return {"ok": True, "detail": how}


def prlimit(event):
    """Set (or with ``read_only`` just read) another process's open-file limit."""
    class RLimit(ctypes.Structure):
        _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]
    new, old = RLimit(12, 12), RLimit()
    pid = os.getpid() if event["pid"] == "self" else event["pid"]
    ret = libc.syscall(302, pid, 7,  # RLIMIT_NOFILE
                       None if event.get("read_only") else ctypes.byref(new), ctypes.byref(old))
    return _raw(ret)


def renice(event):
    which, who = event.get("which", 0), event.get("pid", 0)
    return _raw(libc.syscall(141, which, who, 19))  # setpriority


def affinity(event):
    mask = ctypes.c_uint64(1)
    return _raw(libc.syscall(203, event["pid"], 8, ctypes.byref(mask)))  # sched_setaffinity


def scheduler(event):
    param = ctypes.c_int(0)
    return _raw(libc.syscall(144, event["pid"], 5, ctypes.byref(param)))  # SCHED_IDLE


def sysv(event):
    """Create (or with ``key`` attach to an existing) System V object."""
    kind, key = event["kind"], event.get("key", 0)  # 0 is IPC_PRIVATE
    flags = 0 if key else 0o1000 | 0o600  # IPC_CREAT
    if kind == "shm":
        ident = libc.syscall(29, key, 4096, flags)  # shmget
        if ident < 0:
            return _raw(ident)
        addr = libc.syscall(30, ident, None, 0)  # shmat
        if not key:
            libc.syscall(31, ident, 0, None)  # shmctl(IPC_RMID): gone once detached
        if addr == -1:
            return _raw(-1)
        return {"ok": True, "detail": ctypes.string_at(addr, 16).decode("latin-1")}
    if kind == "sem":
        ident = libc.syscall(64, key, 1, flags)  # semget
        if ident >= 0:
            libc.syscall(66, ident, 0, 0)  # semctl(IPC_RMID)
    else:
        ident = libc.syscall(68, key, flags)  # msgget
        if ident >= 0:
            libc.syscall(71, ident, 0, None)  # msgctl(IPC_RMID)
    return _raw(ident)


def signal_engine(event):
    os.kill(event["pid"], 0)
    return {"ok": True}


def control(event):
    path = _data("control.txt")
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
