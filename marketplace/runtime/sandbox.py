"""What isolation this host can give gears: probing and sandbox levels.

Three levels, from strongest:

``strict``
    namespaces (bubblewrap: own mount, pid, network, ipc and uts
    namespaces, a filesystem of only what the worker needs), seccomp,
    Landlock and rlimits, under a dedicated uid (inside a user namespace
    when the engine is not root).
``standard``
    seccomp, Landlock and rlimits in a plain child process under a dedicated
    uid, reading a staged read-only copy of the interpreter, SDK and gear: no
    namespaces. Needs a root engine (to switch uid); without one a worker
    would share the engine's uid, so the level is not offered.
``dev-unsafe``
    a plain child process with a scrubbed environment and rlimits where the
    OS has them (macOS, or a Linux without seccomp/Landlock). For trusted
    local development only: under a root engine it still runs under a
    dedicated uid (never as root), otherwise gear code can do whatever the
    engine's user can.

No level ever runs a worker as root: where a dedicated uid cannot be had
the level is refused with the reason (see ``Runtime``), and the worker
itself refuses to load a gear as uid 0 or with any capability.

:func:`probe_sandbox_level` finds the best level the host reaches and says
why it is not higher; the runtime refuses untrusted gears below
``GEARS_SANDBOX_MIN_LEVEL`` instead of silently running them with less.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache

from gears_sdk.worker import landlock
from marketplace.runtime import seccomp
from marketplace.runtime.cgroups import probe_cgroups
from marketplace.runtime.datadir import probe_quota
from marketplace.runtime.errors import SandboxError
from marketplace.settings import from_environ

LEVELS = ("dev-unsafe", "standard", "strict")
MIN_LEVEL_ENV = "GEARS_SANDBOX_MIN_LEVEL"


def level_rank(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS`; raises ``SandboxError`` for unknown names."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise SandboxError(f"unknown sandbox level {level!r}; use one of {', '.join(LEVELS)}",
                           code="bad_sandbox_level") from None


@dataclass(frozen=True)
class SandboxReport:
    """The probe's verdict: the level reached, each layer, and why not more."""

    level: str
    layers: dict[str, bool]
    notes: tuple[str, ...] = field(default_factory=tuple)
    bwrap: str | None = None
    #: how memory, tasks and CPU are bounded: ``cgroup v2``, ``cgroup v1`` or ``rlimit only``
    limits: str = "rlimit only"

    def to_dict(self) -> dict[str, object]:
        return {"level": self.level, "layers": dict(self.layers), "limits": self.limits,
                "notes": list(self.notes)}


def default_min_level() -> str:
    """``GEARS_SANDBOX_MIN_LEVEL``, else ``strict`` on Linux and ``dev-unsafe`` elsewhere."""
    value: str | None = from_environ("SANDBOX_MIN_LEVEL")
    if value:
        return value
    return "strict" if sys.platform.startswith("linux") else "dev-unsafe"


def _bwrap_works(bwrap: str) -> tuple[bool, str]:
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--clearenv", "--ro-bind", "/", "/",
            "--proc", "/proc", "--dev", "/dev"]
    if os.geteuid() != 0:
        argv.append("--unshare-user")
    argv += ["--", sys.executable, "-I", "-S", "-c", "pass"]
    try:
        proc = subprocess.run(argv, env={}, capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap failed to start: {exc}"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[:300]
        return False, f"bubblewrap cannot create namespaces here: {err}"
    return True, f"bubblewrap at {bwrap}"


@cache
def probe_sandbox_level() -> SandboxReport:
    """Probe once per process which layers work on this host."""
    notes: list[str] = []
    linux = sys.platform.startswith("linux")
    layers = {"rlimits": os.name == "posix", "seccomp": False, "landlock": False,
              "namespaces": False, "dedicated_uid": linux and os.geteuid() == 0}
    bwrap = None
    if linux:
        layers["seccomp"], why = seccomp.available()
        notes.append(why if layers["seccomp"] else f"no seccomp: {why}")
        abi = landlock.abi_version()
        layers["landlock"] = abi >= 1
        notes.append(f"Landlock ABI {abi}" if abi else "no Landlock in this kernel")
        found = shutil.which("bwrap")
        if found:
            layers["namespaces"], why = _bwrap_works(found)
            bwrap = found if layers["namespaces"] else None
            notes.append(why)
        else:
            notes.append("no namespaces: bubblewrap (bwrap) is not installed")
        if not layers["dedicated_uid"]:
            notes.append("not running as root: workers run under the engine's uid inside a "
                         "user namespace at strict (RLIMIT_NPROC is shared), and standard, "
                         "which has no namespace to hide the engine's files and processes, "
                         "is not offered")
    else:
        notes.append(f"{sys.platform} has no seccomp, Landlock or namespaces: dev-unsafe only")
    cgroups = probe_cgroups()
    layers["cgroups"] = cgroups.version is not None
    notes.append(cgroups.reason)
    layers["data_quota"], why = probe_quota()
    notes.append(why)
    return SandboxReport(_best_level(layers), layers, tuple(notes), bwrap, cgroups.level)


def _best_level(layers: dict[str, bool]) -> str:
    """strict needs namespaces; standard a dedicated uid instead; both seccomp and Landlock."""
    confined = layers["seccomp"] and layers["landlock"] and layers["rlimits"]
    if confined and layers["namespaces"]:
        return "strict"
    return "standard" if confined and layers["dedicated_uid"] else "dev-unsafe"


def check_level(level: str, min_level: str, *, report: SandboxReport) -> None:
    """Refuse a requested ``level`` the host cannot reach or that is below ``min_level``."""
    if level_rank(level) > level_rank(report.level):
        raise SandboxError(
            f"sandbox level {level!r} is not available on this host (it reaches "
            f"{report.level!r}: {'; '.join(report.notes)})",
            hint="install bubblewrap (scripts/install-system-deps.sh) or lower the level")
    if level_rank(level) < level_rank(min_level):
        raise SandboxError(
            f"sandbox level {level!r} is below the required minimum {min_level!r}; "
            "untrusted gears are not run with weaker isolation",
            hint=f"set {MIN_LEVEL_ENV} to allow a lower level (development only)")
