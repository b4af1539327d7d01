"""The runtime: installations, their workers, their proxies and their health.

::

    runtime = Runtime()                      # probes the host, checks the level
    runtime.start(installation)              # launches the sandboxed worker
    pm.register(runtime.proxy(inst.id), name=inst.id)
    pm.hook.gear_on_event(event=e, profile=p, config=None, ctx=None)
    runtime.health()                         # {installation id: counters}
    runtime.close()
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.runtime.errors import GearCallError, GearDisabled, SandboxError
from marketplace.runtime.health import DEFAULT_FAILURE_THRESHOLD, Health, OnDisable
from marketplace.runtime.http import HostHttp, allowed_private_hosts_from_env
from marketplace.runtime.installation import Installation
from marketplace.runtime.launcher import LaunchPlan, ResourceLimits, plan_standard, plan_strict
from marketplace.runtime.permissions import ResultRefused, filter_arguments, normalize_result
from marketplace.runtime.proxy import GearProxy, make_proxy
from marketplace.runtime.sandbox import (
    SandboxReport,
    check_level,
    default_min_level,
    level_rank,
    probe_sandbox_level,
)
from marketplace.runtime.services import Services
from marketplace.runtime.worker import Worker

#: Workers run under uids from this range (one per installation) when the engine is root.
UID_BASE = int(os.environ.get("GEARS_SANDBOX_UID_BASE", "1900000000"))
UID_COUNT = 65536


@dataclass
class _Entry:
    inst: Installation
    worker: Worker
    health: Health
    proxy: GearProxy | None = None


class Runtime:
    """Runs installed gears in sandboxed workers and calls them.

    ``level`` defaults to the best level the host reaches; ``min_level`` to
    ``GEARS_SANDBOX_MIN_LEVEL`` (``strict`` on Linux). Untrusted
    installations are refused below ``min_level``.
    """

    def __init__(self, level: str | None = None, min_level: str | None = None, *,
                 root_dir: str | Path | None = None,
                 failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 on_disable: OnDisable | None = None, limits: ResourceLimits | None = None,
                 allow_private_hosts: frozenset[str] | None = None,
                 report: SandboxReport | None = None):
        self.report = report or probe_sandbox_level()
        self.level = level or self.report.level
        self.min_level = min_level or default_min_level()
        check_level(self.level, "dev-unsafe", report=self.report)
        self.failure_threshold = failure_threshold
        self.on_disable = on_disable
        self.limits = limits or ResourceLimits()
        self.allow_private_hosts = (allowed_private_hosts_from_env()
                                    if allow_private_hosts is None else allow_private_hosts)
        self._own_root = root_dir is None
        self.root_dir = Path(root_dir or tempfile.mkdtemp(prefix="gears-runtime-"))
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, _Entry] = {}
        self._uids: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- installations --------------------------------------------------------

    def _uid_for(self, installation: str) -> int | None:
        if os.geteuid() != 0:
            return None
        if installation not in self._uids:
            digest = int.from_bytes(hashlib.sha256(installation.encode()).digest()[:8], "big")
            uid = UID_BASE + digest % UID_COUNT
            taken = set(self._uids.values())
            while uid in taken:
                uid = UID_BASE + (uid - UID_BASE + 1) % UID_COUNT
            self._uids[installation] = uid
        return self._uids[installation]

    def _data_dir(self, inst: Installation) -> Path:
        data = inst.data_dir or self.root_dir / "data" / inst.id
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        inst.data_dir = data
        return data

    def _planner(self, inst: Installation, uid: int | None, data: Path) -> LaunchPlan:
        if self.level == "strict":
            assert self.report.bwrap is not None
            plan = plan_strict(inst, bwrap=self.report.bwrap, uid=uid, data_dir=data,
                               limits=self.limits)
        else:
            plan = plan_standard(inst, uid=uid, data_dir=data, runtime_dir=self.root_dir,
                                 limits=self.limits, confined=self.level == "standard")
        if plan.owner is not None and os.geteuid() == 0:
            # only the worker's own uid may enter the data dir (mode 0700)
            for path in (data, *data.rglob("*")):
                os.lchown(path, plan.owner, plan.owner)
        return plan

    def start(self, inst: Installation) -> Worker:
        """Launch ``inst``'s worker (refusing a too-weak sandbox) and return it."""
        if not inst.trusted and level_rank(self.level) < level_rank(self.min_level):
            raise SandboxError(
                f"refusing to run {inst.gear} ({inst.id}): the sandbox level is "
                f"{self.level!r}, below the required {self.min_level!r}",
                hint="set GEARS_SANDBOX_MIN_LEVEL to accept a weaker sandbox (development only)")
        with self._lock:
            if inst.id in self._entries:
                raise SandboxError(f"installation {inst.id} is already running",
                                   code="already_started")
            uid = self._uid_for(inst.id) if self.level != "dev-unsafe" else None
            data = self._data_dir(inst)
            health = Health(inst.id, self.failure_threshold, self.on_disable)
            services = Services(inst, HostHttp(inst.manifest.permissions.network,
                                               allow_private=self.allow_private_hosts))
            worker = Worker(inst, lambda: self._planner(inst, uid, data), services, health)
            self._entries[inst.id] = _Entry(inst, worker, health)
        try:
            worker.start()
        except GearCallError:
            with self._lock:
                self._entries.pop(inst.id, None)
            raise
        return worker

    def installation(self, installation: str) -> Installation:
        return self._entry(installation).inst

    def worker(self, installation: str) -> Worker:
        return self._entry(installation).worker

    def _entry(self, installation: str) -> _Entry:
        try:
            return self._entries[installation]
        except KeyError:
            raise GearCallError(f"installation {installation} is not running",
                                installation=installation, code="not_running") from None

    def proxy(self, installation: str) -> GearProxy:
        """The pluggy plugin for ``installation`` (the same object on every call)."""
        entry = self._entry(installation)
        if entry.proxy is None:
            entry.proxy = make_proxy(self, installation)
        return entry.proxy

    def stop(self, installation: str) -> None:
        entry = self._entries.pop(installation, None)
        if entry is not None:
            entry.worker.stop()

    def close(self) -> None:
        """Stop every worker and remove the runtime's own scratch directory."""
        for installation in list(self._entries):
            self.stop(installation)
        if self._own_root:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls and health -----------------------------------------------------

    def call(self, installation: str, hook: str, **kwargs: Any) -> Any:
        """Call one installation's ``hook``; the typed result or ``GearCallError``.

        ``config`` and ``ctx`` are the installation's own, whatever is passed.
        Every failure the gear is responsible for counts toward its breaker.
        """
        entry = self._entry(installation)
        inst, health = entry.inst, entry.health
        if health.disabled:
            raise GearDisabled(f"disabled: {health.reason}", installation=inst.id,
                               gear=inst.gear)
        if hook not in inst.manifest.hooks:
            raise GearCallError(f"{inst.gear} does not declare {hook}", installation=inst.id,
                                gear=inst.gear, code="hook_missing")
        kwargs.pop("ctx", None)
        kwargs = filter_arguments(inst.manifest, kwargs)
        kwargs["config"] = dict(inst.config)
        timeout_ms = int(inst.manifest.limits.get("timeout_ms", 1000))
        began = time.monotonic()
        try:
            raw = entry.worker.call(hook, kwargs, timeout_ms)
            value = normalize_result(inst.manifest, hook, raw)
        except ResultRefused as exc:
            err = GearCallError(str(exc), installation=inst.id, gear=inst.gear, code=exc.code)
            health.failure(err.message, latency_ms=(time.monotonic() - began) * 1000)
            raise err from None
        except GearCallError as exc:
            if exc.code not in ("too_large", "backoff") or exc.error_type == "ResultTooLarge":
                health.failure(exc.message, timeout=exc.code == "timeout")
            raise
        health.success((time.monotonic() - began) * 1000)
        return value

    def enable(self, installation: str) -> None:
        """Re-enable an installation the circuit breaker disabled."""
        self._entry(installation).health.enable()

    def health(self) -> dict[str, dict[str, Any]]:
        """Counters, latency percentiles and disable reasons, per installation."""
        return {i: {**e.health.snapshot(), "gear": e.inst.gear, "pid": e.worker.pid,
                    "level": self.level, "sandbox": dict(e.worker.sandbox)}
                for i, e in list(self._entries.items())}
