"""How a worker process is started at each sandbox level.

The launcher turns an installation and a level into a :class:`LaunchPlan`:
the exact argv, an environment holding nothing of the engine's, the rlimits
applied between fork and exec, and the confinement the worker applies to
itself (uid, Landlock paths, the seccomp program), sent in the ``start``
message.

At ``strict`` the engine (root) starts bubblewrap with an empty environment.
Bubblewrap builds a fresh root holding only the interpreter, the shared
libraries, the SDK and pluggy, the gear's code (all read-only) and the
installation's data dir at ``/data``; new pid, network, ipc and uts
namespaces; a private ``/proc`` and a minimal ``/dev``. It hands the worker
only CAP_SETUID/CAP_SETGID, which the worker spends at once switching to the
installation's dedicated uid.
"""

from __future__ import annotations

import base64
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

import gears_sdk
from gears_sdk.worker import confine
from gears_sdk.worker.main import BOOT
from marketplace.runtime import seccomp
from marketplace.runtime.cgroups import CgroupLimits, WorkerCgroup
from marketplace.runtime.installation import Installation
from marketplace.runtime.staging import Stage

SANDBOX_LIB = "/opt/gears/lib"
SANDBOX_GEAR = "/opt/gears/gear"
SANDBOX_DATA = "/data"
_LIB_DIRS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32")
_LD_CACHE = "/etc/ld.so.cache"
WORKER_ENV = {"LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class ResourceLimits:
    """rlimits for a worker; memory comes from the manifest's ``limits.memory_mb``.

    ``overhead_mb`` is the interpreter's own address space (libraries,
    arenas, the SDK) added on top of what the gear may use.
    """

    overhead_mb: int = 192
    cpu_seconds: int = 600
    open_files: int = 64
    file_size_mb: int = 16
    processes: int = 16
    #: resident memory of the interpreter and bubblewrap on top of ``memory_mb``
    #: in the worker's control group (which counts pages, not address space)
    cgroup_overhead_mb: int = 64
    #: CPUs a worker may use during a call (its cgroup's cpu quota)
    cpu_cores: float = 1.0

    def cgroup_limits(self, memory_mb: int) -> CgroupLimits:
        """The worker's control-group limits for a manifest's ``limits.memory_mb``."""
        period = 100_000
        return CgroupLimits(memory_bytes=(memory_mb + self.cgroup_overhead_mb) * 1024 * 1024,
                            pids=self.processes, cpu_quota_us=max(1000, int(self.cpu_cores * period)),
                            cpu_period_us=period)

    def rlimits(self, memory_mb: int) -> dict[int, int]:
        return {
            resource.RLIMIT_AS: (memory_mb + self.overhead_mb) * 1024 * 1024,
            resource.RLIMIT_CPU: self.cpu_seconds,
            resource.RLIMIT_NOFILE: self.open_files,
            resource.RLIMIT_FSIZE: self.file_size_mb * 1024 * 1024,
            resource.RLIMIT_CORE: 0,
            resource.RLIMIT_NPROC: self.processes,
        }


@dataclass
class LaunchPlan:
    """Everything needed to start one worker."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    start_sandbox: dict[str, Any]
    gear_path: str
    rlimits: dict[int, int]
    user: int | None = None
    #: the uid that must own the data dir (the worker's uid once it is confined)
    owner: int | None = None
    notes: list[str] = field(default_factory=list)
    #: the worker's control group, joined between fork and exec
    cgroup: WorkerCgroup | None = None

    def preexec(self) -> Callable[[], None]:
        """Runs in the child between fork and exec: join the control group (as root,
        so before any uid switch), switch to ``user``, then set the rlimits."""
        limits = dict(self.rlimits)
        group, user = self.cgroup, self.user

        def apply() -> None:
            if group is not None:
                group.join()
            if user is not None:
                os.setgroups([])
                os.setresgid(user, user, user)
                os.setresuid(user, user, user)
            for which, value in limits.items():
                resource.setrlimit(which, (value, value))
            confine.die_with_parent()
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)

        return apply


def interpreter() -> tuple[str, str]:
    """The real interpreter binary and its prefix (never a venv's symlink)."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def package_dirs() -> dict[str, str]:
    """The only packages a worker imports besides the stdlib."""
    return {"gears_sdk": str(Path(gears_sdk.__file__).resolve().parent),
            "pluggy": str(Path(pluggy.__file__).resolve().parent)}


def _boot(lib: str) -> str:
    return BOOT.format(lib=lib)


def _python_argv(python: str, lib: str) -> list[str]:
    return [python, "-I", "-S", "-B", "-c", _boot(lib)]


def _seccomp_b64(allow_unix: bool) -> str:
    return base64.b64encode(seccomp.cached_filter(allow_unix)).decode("ascii")


def _signal_filter_b64() -> str:
    """The second seccomp program: signals only to the worker itself (see seccomp.py)."""
    return base64.b64encode(seccomp.cached_signal_filter()).decode("ascii")


def plan_strict(inst: Installation, *, bwrap: str, uid: int | None, data_dir: Path,
                limits: ResourceLimits) -> LaunchPlan:
    """bubblewrap + dedicated uid + Landlock + seccomp + rlimits."""
    python, prefix = interpreter()
    binds: list[tuple[str, str, bool]] = [(prefix, prefix, False)]
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "gear"]
    if uid is None:  # not root: bubblewrap needs a user namespace to do anything
        args.append("--unshare-user")
    else:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    for key, value in WORKER_ENV.items():
        args += ["--setenv", key, value]
    for d in _LIB_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d) and not (d == prefix or d.startswith(prefix + "/")):
            binds.append((d, d, False))
    if os.path.isfile(_LD_CACHE):
        binds.append((_LD_CACHE, _LD_CACHE, False))
    for name, src in package_dirs().items():
        binds.append((src, f"{SANDBOX_LIB}/{name}", False))
    binds.append((str(inst.gear_dir.resolve()), SANDBOX_GEAR, False))
    binds.append((str(data_dir), SANDBOX_DATA, True))
    made: set[str] = {"/"}
    dests = [b[1] for b in binds]
    for src, dest, writable in sorted(binds, key=lambda b: b[1]):
        for parent in map(str, reversed(Path(dest).parents)):
            # bubblewrap copies the host's modes for directories it creates (/root
            # would be 0700); make every ancestor traversable by the worker's uid,
            # unless it lies inside another bind mount.
            inside = any(parent == d or parent.startswith(d + "/") for d in dests)
            if parent not in made and not inside:
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--bind" if writable else "--ro-bind", src, dest]
    site = Path(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                "site-packages")
    if site.is_dir():  # the base interpreter's own packages are none of the gear's business
        args += ["--tmpfs", str(site)]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",  # noqa: S108 (a private tmpfs)
             "--chdir", SANDBOX_DATA,
             "--", *_python_argv(python, SANDBOX_LIB)]
    read = [prefix, *(d for d in _LIB_DIRS if os.path.isdir(d)), _LD_CACHE, "/opt/gears"]
    sandbox = {"uid": uid, "gid": uid,
               "landlock": {"read": read, "write": [SANDBOX_DATA]},
               "seccomp": _seccomp_b64(allow_unix=True), "seccomp_signals": _signal_filter_b64()}
    return LaunchPlan(args, {}, str(data_dir), sandbox, SANDBOX_GEAR,
                      limits.rlimits(inst.manifest.limits.get("memory_mb", 128)), owner=uid)


def _staged_lib(runtime_dir: Path) -> Path:
    """A directory holding only symlinks to gears_sdk and pluggy (the worker's sys.path)."""
    lib = runtime_dir / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    # the worker's dedicated uid must be able to traverse to the symlinks
    os.chmod(runtime_dir, 0o755)  # noqa: S103
    os.chmod(lib, 0o755)  # noqa: S103
    for name, src in package_dirs().items():
        link = lib / name
        if not link.is_symlink():
            link.symlink_to(src, target_is_directory=True)
    return lib


def plan_standard(inst: Installation, *, uid: int | None, data_dir: Path, runtime_dir: Path,
                  limits: ResourceLimits, confined: bool = True,
                  stage: Stage | None = None) -> LaunchPlan:
    """A plain child process; with ``confined`` also Landlock + seccomp (``standard``).

    With a ``uid`` (the engine is root) the worker runs under it, reading a
    staged, read-only copy of the interpreter, SDK and gear (``stage``);
    without one it runs as the engine's own (non-root) user.
    """
    if uid is not None:
        if stage is None:
            raise ValueError("a worker under a dedicated uid needs a stage")
        python, read_paths, lib, gear, env = _staged_paths(inst, stage)
    else:
        python, prefix = interpreter()
        lib = str(_staged_lib(runtime_dir))
        gear = str(inst.gear_dir.resolve())
        read_paths, env = [prefix, gear, lib, *package_dirs().values()], dict(WORKER_ENV)
    sandbox: dict[str, Any] = {"uid": None, "gid": None, "landlock": None, "seccomp": None}
    if confined:
        read = [*read_paths, *(d for d in _LIB_DIRS if os.path.isdir(d)), _LD_CACHE]
        # "." is the data dir: the worker starts there, even where a dedicated uid
        # could not traverse the directories above it
        sandbox["landlock"] = {"read": read, "write": ["."]}
        sandbox["seccomp"] = _seccomp_b64(allow_unix=False)
        sandbox["seccomp_signals"] = _signal_filter_b64()
    return LaunchPlan(_python_argv(python, lib), env, str(data_dir), sandbox, gear,
                      limits.rlimits(inst.manifest.limits.get("memory_mb", 128)),
                      user=uid, owner=uid if uid is not None else os.geteuid())


def _staged_paths(inst: Installation,
                  stage: Stage) -> tuple[str, list[str], str, str, dict[str, str]]:
    """Interpreter, read paths, SDK dir, gear dir and environment, all staged."""
    python, prefix = interpreter()
    staged = stage.interpreter(python, prefix)
    lib = stage.packages(package_dirs())
    gear = stage.gear(inst.id, inst.gear_dir)
    return (staged.python, [staged.prefix, lib, gear], lib, gear,
            {**WORKER_ENV, **staged.env})
