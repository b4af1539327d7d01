"""Run installed gears in sandboxed worker processes and call them through pluggy.

Gear code never runs in the engine's process. Each installation gets one
persistent worker (:class:`Worker`) confined by the kernel — namespaces,
seccomp, Landlock and rlimits, as far as the host supports them
(:func:`probe_sandbox_level`) — and one proxy plugin (:func:`make_proxy`)
that the engine registers in its ``PluginManager``. See ``docs/security.md``.
"""

from marketplace.runtime.errors import (
    GearCallError,
    GearCrashed,
    GearDisabled,
    GearProtocolError,
    GearTimeout,
    SandboxError,
)
from marketplace.runtime.installation import Installation
from marketplace.runtime.launcher import ResourceLimits
from marketplace.runtime.proxy import (
    HOOK_POLICY,
    GearFailure,
    GearResult,
    HookDeclined,
    make_proxy,
    settle,
    successes,
)
from marketplace.runtime.runtime import Runtime
from marketplace.runtime.sandbox import LEVELS, SandboxReport, probe_sandbox_level
from marketplace.runtime.state import JsonFileStateStore, MemoryStateStore, StateStore
from marketplace.runtime.worker import Worker

__all__ = [
    "HOOK_POLICY",
    "LEVELS",
    "GearCallError",
    "GearCrashed",
    "GearDisabled",
    "GearFailure",
    "GearProtocolError",
    "GearResult",
    "GearTimeout",
    "HookDeclined",
    "Installation",
    "JsonFileStateStore",
    "MemoryStateStore",
    "ResourceLimits",
    "Runtime",
    "SandboxError",
    "SandboxReport",
    "StateStore",
    "Worker",
    "make_proxy",
    "probe_sandbox_level",
    "settle",
    "successes",
]
