"""Kernel-enforced resource limits for each worker: one control group per process.

rlimits are per process and miss what a gear can hold without mapping it:
System V shared memory detached after filling, a memfd written through
``write()``, page cache, threads beyond what one uid counts, CPU burnt by a
background thread between calls. A control group bounds all of it for every
task inside, whatever they do:

- ``memory``: the manifest's ``limits.memory_mb`` plus the interpreter's
  overhead, covering anonymous memory, shared memory, memfd, tmpfs and page
  cache (and swap, where the kernel accounts it); over the limit the kernel's
  OOM killer kills inside the group, which the runtime reports as
  ``memory_limit``;
- ``pids``: tasks (processes *and* threads) of the whole sandbox;
- ``cpu``: a quota per period (at most ``cpu_cores`` CPUs during a call);
- ``freezer``: between calls the group is frozen, so a background thread
  burns no CPU and writes nothing while the gear is idle.

Both hierarchies are supported. cgroup v2 (one ``cgroup2`` mount, files
``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.max``,
``cgroup.freeze``, ``cgroup.kill``) is preferred when it has the memory,
pids and cpu controllers; otherwise the v1 controllers mounted one per
directory (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes``,
``pids.max``, ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``freezer.state``,
``cpuacct.usage``). Worker groups are created under the engine's own group in
each hierarchy (``<engine's group>/gears/<worker>``), so whatever bounds the
engine also bounds its gears, or under ``GEARS_CGROUP_PARENT`` (a path
inside the v2 mount the operator delegated) when set.

The worker joins its group between fork and exec (:meth:`WorkerCgroup.join`
runs in the child before any uid switch and before bubblewrap starts), so
every task of the sandbox is born inside it and no gear code ever runs
outside. The group is removed when the worker stops.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from marketplace.runtime.files import pid_alive
from marketplace.settings import from_environ

PARENT_ENV = "GEARS_CGROUP_PARENT"
GROUP_DIR = "gears"
V1_REQUIRED = ("memory", "pids", "cpu")
V1_OPTIONAL = ("cpuacct", "freezer")
V2_REQUIRED = ("memory", "pids", "cpu")
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class CgroupLimits:
    """What one worker's group enforces."""

    memory_bytes: int
    pids: int
    cpu_quota_us: int
    cpu_period_us: int = 100_000


@dataclass(frozen=True)
class CgroupHost:
    """Which hierarchy this host offers for workers, and where groups go.

    ``version`` is ``"v2"``, ``"v1"`` or ``None`` (no usable controllers:
    rlimits only, ``reason`` says why). ``parents`` maps each controller
    (v1) or ``"unified"`` (v2) to the directory worker groups are made in.
    """

    version: str | None
    reason: str
    parents: dict[str, Path] = field(default_factory=dict)

    @property
    def level(self) -> str:
        """``cgroup v2`` / ``cgroup v1`` / ``rlimit only``, for reports."""
        return f"cgroup {self.version}" if self.version else "rlimit only"

    def create(self, name: str, limits: CgroupLimits) -> WorkerCgroup | None:
        """A new group for one worker with ``limits`` written, or None without cgroups."""
        if self.version is None:
            return None
        leaf = f"{_NAME_OK.sub('_', name)[:80]}.{os.getpid()}.{next(_serial)}"
        made: dict[str, Path] = {}
        try:
            for controller, parent in self.parents.items():
                self._ensure_parent(parent)
                path = parent / leaf
                if path not in made.values():  # controllers mounted together share one
                    path.mkdir(mode=0o755)
                made[controller] = path
            group = WorkerCgroup(self.version, made, limits)
            group.apply()
        except OSError as exc:
            WorkerCgroup(self.version, made, limits).remove()
            raise CgroupError(f"could not set up the worker's control group: {exc}") from exc
        return group


    def _ensure_parent(self, parent: Path) -> None:
        """Recreate the shared parent if an idle runtime removed it (:meth:`release`)."""
        if parent.is_dir():
            return
        parent.mkdir(mode=0o755, exist_ok=True)
        if self.version == "v2":
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in V2_REQUIRED))

    def sweep(self) -> int:
        """Remove worker groups left by engine processes that died without stopping
        their workers; returns how many. Their tasks are killed too: a task frozen
        in a v1 freezer does not die of its parent-death SIGKILL until thawed."""
        names: set[str] = set()
        for parent in dict.fromkeys(self.parents.values()):
            try:
                leaves = [p.name for p in parent.iterdir() if p.is_dir()]
            except OSError:
                continue
            for name in leaves:
                parts = name.rsplit(".", 2)
                if len(parts) == 3 and parts[1].isdigit() and not pid_alive(int(parts[1])):
                    names.add(name)
        removed = 0
        for name in sorted(names):
            paths = {c: p / name for c, p in self.parents.items() if (p / name).is_dir()}
            try:
                if WorkerCgroup(self.version or "v1", paths, CgroupLimits(0, 0, 0)).remove(2.0):
                    removed += 1
            except OSError:
                pass
        return removed

    def release(self) -> None:
        """Remove the shared parents when no worker group is left in them (best effort:
        another runtime's workers keep them busy, and it recreates them when needed)."""
        for parent in dict.fromkeys(self.parents.values()):
            try:
                parent.rmdir()
            except OSError:
                pass


class CgroupError(OSError):
    """A worker's control group could not be created or configured."""


_serial = itertools.count(1)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:  # one write() per value: cgroupfs semantics
        fh.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str, key: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


class WorkerCgroup:
    """One worker's control group (a directory per v1 controller, or one v2 directory)."""

    def __init__(self, version: str, paths: dict[str, Path], limits: CgroupLimits):
        self.version = version
        self.paths = paths
        self.limits = limits
        self.removed = False
        self._final: dict[str, int] = {}
        #: resolved before fork: :meth:`join` must not compute anything in the child
        self._procs = tuple(str(p / "cgroup.procs") for p in self._dirs())

    def _dirs(self) -> list[Path]:
        return list(dict.fromkeys(self.paths.values()))

    # -- setup ----------------------------------------------------------------

    def apply(self) -> None:
        """Write the limits (memory first, so swap never exceeds it)."""
        lim = self.limits
        if self.version == "v2":
            path = self.paths["unified"]
            _write(path / "memory.max", str(lim.memory_bytes))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
            if (path / "memory.oom.group").exists():
                _write(path / "memory.oom.group", "1")
            _write(path / "pids.max", str(lim.pids))
            _write(path / "cpu.max", f"{lim.cpu_quota_us} {lim.cpu_period_us}")
            return
        mem = self.paths["memory"]
        _write(mem / "memory.limit_in_bytes", str(lim.memory_bytes))
        if (mem / "memory.memsw.limit_in_bytes").exists():
            _write(mem / "memory.memsw.limit_in_bytes", str(lim.memory_bytes))
        _write(self.paths["pids"] / "pids.max", str(lim.pids))
        cpu = self.paths["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(lim.cpu_period_us))
        _write(cpu / "cpu.cfs_quota_us", str(lim.cpu_quota_us))

    def join(self) -> None:
        """Move the calling process into the group. Runs in the child between fork
        and exec, as root, before anything else: all its descendants are born inside."""
        pid = str(os.getpid())
        for procs in self._procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid.encode())
            finally:
                os.close(fd)

    # -- between calls ----------------------------------------------------------

    @property
    def can_freeze(self) -> bool:
        return self.version == "v2" or "freezer" in self.paths

    def freeze(self) -> None:
        """Stop every task of the worker until :meth:`thaw` (no CPU, no output)."""
        self._freezer("1" if self.version == "v2" else "FROZEN")

    def thaw(self) -> None:
        self._freezer("0" if self.version == "v2" else "THAWED")

    def _freezer(self, value: str) -> None:
        if self.removed or not self.can_freeze:
            return
        if self.version == "v2":
            _write(self.paths["unified"] / "cgroup.freeze", value)
        else:
            _write(self.paths["freezer"] / "freezer.state", value)

    # -- accounting -------------------------------------------------------------

    def cpu_usage_ns(self) -> int:
        """CPU time used by every task of the group so far (nanoseconds)."""
        if self.version == "v2":
            return _keyed(_read(self.paths["unified"] / "cpu.stat"), "usage_usec") * 1000
        acct = self.paths.get("cpuacct")
        text = _read(acct / "cpuacct.usage").strip() if acct else ""
        return int(text) if text.isdigit() else 0

    def oom_kills(self) -> int:
        """Tasks the kernel's OOM killer killed in this group (memory over the limit)."""
        if "oom_kills" in self._final:
            return self._final["oom_kills"]
        if self.version == "v2":
            return _keyed(self._file("unified", "memory.events"), "oom_kill")
        return _keyed(self._file("memory", "memory.oom_control"), "oom_kill")

    def pids_refused(self) -> int:
        """How many times a new task was refused because ``pids.max`` was reached."""
        if "pids_refused" in self._final:
            return self._final["pids_refused"]
        return _keyed(self._file("unified" if self.version == "v2" else "pids", "pids.events"),
                      "max")

    def pids(self) -> list[int]:
        """The group's tasks (thread-group leaders), in every hierarchy it spans."""
        found: dict[int, None] = {}
        for path in self._dirs():
            for p in _read(path / "cgroup.procs").split():
                if p.isdigit():
                    found[int(p)] = None
        return list(found)

    def _file(self, controller: str, name: str) -> str:
        path = self.paths.get(controller)
        return _read(path / name) if path is not None else ""

    # -- teardown -----------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every task of the group (thawed first: a frozen task cannot die in v1)."""
        if self.removed:
            return
        try:
            self.thaw()
        except OSError:
            pass
        if self.version == "v2" and (self.paths["unified"] / "cgroup.kill").exists():
            try:
                _write(self.paths["unified"] / "cgroup.kill", "1")
                return
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def remove(self, timeout: float = 5.0) -> bool:
        """Kill what is left, then remove the group's directories; True when all are gone.

        The last counters are kept so a crash can still be explained after removal.
        """
        if self.removed:
            return True
        self._final = {"oom_kills": self.oom_kills(), "pids_refused": self.pids_refused()}
        self.kill()
        deadline = time.monotonic() + timeout
        left = self._dirs()
        while left:
            for path in list(left):
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    continue
                left.remove(path)
            if left:
                if time.monotonic() > deadline:
                    return False
                self.kill()
                time.sleep(0.01)
        self.removed = True
        return True


# -- probing ----------------------------------------------------------------------------------

def _mounts(mountinfo: str) -> tuple[dict[str, tuple[Path, str]], tuple[Path, str] | None]:
    """v1 controller → (mount point, mount root) and the v2 mount, from mountinfo."""
    v1: dict[str, tuple[Path, str]] = {}
    v2: tuple[Path, str] | None = None
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, point, fstype = fields[3], Path(fields[4].replace("\\040", " ")), rest[0]
        if fstype == "cgroup2" and v2 is None:
            v2 = (point, root)
        elif fstype == "cgroup":
            for opt in rest[2].split(","):
                if opt in (*V1_REQUIRED, *V1_OPTIONAL) and opt not in v1:
                    v1[opt] = (point, root)
    return v1, v2


def _own_groups(text: str) -> dict[str, str]:
    """controller (or ``""`` for v2) → this process's group path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                out[controller] = parts[2]
    return out


def _inside(point: Path, root: str, group: str) -> Path:
    rel = group[len(root):] if root != "/" and group.startswith(root) else group
    return point / rel.lstrip("/")


def _usable(parent: Path) -> str | None:
    """Make ``parent`` (if needed) and check a child can be created and removed in it."""
    try:
        parent.mkdir(mode=0o755, exist_ok=True)
        probe = parent / f"probe.{os.getpid()}.{next(_serial)}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"{parent}: {exc.strerror or exc}"
    return None


def _weigh(path: Path, per_cpu: int, most: int) -> None:
    """Weigh the workers' shared parent like one task per CPU, not like one task:
    under contention all workers together would otherwise get one thread's share."""
    try:
        _write(path, str(min(most, per_cpu * (os.cpu_count() or 1))))
    except OSError:
        pass


def _probe_v2(v2: tuple[Path, str], own: dict[str, str]) -> CgroupHost | str:
    point, root = v2
    chosen = (from_environ("CGROUP_PARENT") or "").strip()
    base = Path(chosen) if chosen else _inside(point, root, own.get("", "/")) / GROUP_DIR
    if chosen and not base.is_relative_to(point):
        return f"{PARENT_ENV}={chosen} is not inside the cgroup2 mount {point}"
    have = set(_read(base.parent / "cgroup.controllers").split())
    if not set(V2_REQUIRED) <= have:
        return (f"cgroup v2 at {point} lacks the {', '.join(sorted(set(V2_REQUIRED) - have))} "
                f"controller(s) for {base.parent}")
    problem = _usable(base)
    if problem is None:
        try:  # the controllers must be enabled on the way down to the worker groups
            for p in (base.parent, base):
                _write(p / "cgroup.subtree_control", " ".join(f"+{c}" for c in V2_REQUIRED))
        except OSError as exc:
            problem = (f"cannot enable controllers under {base.parent} ({exc.strerror}); "
                       f"delegate a group and set {PARENT_ENV}")
    if problem is not None:
        return f"cgroup v2 unusable: {problem}"
    _weigh(base / "cpu.weight", 100, 10_000)
    return CgroupHost("v2", f"cgroup v2 at {base}", {"unified": base})


def _probe_v1(v1: dict[str, tuple[Path, str]], own: dict[str, str]) -> CgroupHost | str:
    missing = [c for c in V1_REQUIRED if c not in v1]
    if missing:
        return f"no cgroup v1 {', '.join(missing)} controller mounted"
    parents: dict[str, Path] = {}
    for controller in (*V1_REQUIRED, *V1_OPTIONAL):
        if controller not in v1:
            continue
        point, root = v1[controller]
        base = _inside(point, root, own.get(controller, "/")) / GROUP_DIR
        problem = None if base in parents.values() else _usable(base)
        if problem is not None:
            if controller in V1_REQUIRED:
                return f"cgroup v1 unusable: {problem}"
            continue
        parents[controller] = base
    _weigh(parents["cpu"] / "cpu.shares", 1024, 262_144)
    names = ", ".join(parents)
    return CgroupHost("v1", f"cgroup v1 ({names}) under {parents['memory']}", parents)


@cache
def probe_cgroups() -> CgroupHost:
    """Which control groups this process can create for workers (probed once)."""
    if not os.path.exists("/proc/self/mountinfo"):
        return CgroupHost(None, "no control groups on this platform: rlimits only")
    v1, v2 = _mounts(_read(Path("/proc/self/mountinfo")))
    own = _own_groups(_read(Path("/proc/self/cgroup")))
    reasons: list[str] = []
    for attempt in ((lambda: _probe_v2(v2, own)) if v2 else None,
                    (lambda: _probe_v1(v1, own)) if v1 else None):
        if attempt is None:
            continue
        found = attempt()
        if isinstance(found, CgroupHost):
            found.sweep()
            return found
        reasons.append(found)
    if not reasons:
        reasons.append("no cgroup filesystem mounted")
    return CgroupHost(None, "; ".join(reasons) + ": rlimits only")
