"""The runtime: installations, their workers, their proxies and their health.

::

    runtime = Runtime()                      # probes the host, checks the level
    runtime.start(installation)              # launches the sandboxed worker
    pm.register(runtime.proxy(inst.id), name=inst.id)
    pm.hook.gear_on_event(event=e, profile=p, config=None, ctx=None)
    runtime.call_batch(inst.id, "gear_on_event", [{"event": e, "profile": p}, ...])
    runtime.health()                         # {installation id: counters}
    runtime.close()
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import resource
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gears_sdk.worker.protocol import BATCH_OVERHEAD_BYTES, MAX_MESSAGE_BYTES, dumps
from marketplace.runtime.cgroups import CgroupError, CgroupHost, probe_cgroups
from marketplace.runtime.datadir import (
    DataQuota,
    adopt_existing,
    mount_quota,
    probe_quota,
    unmount_quota,
)
from marketplace.runtime.errors import GearCallError, GearDisabled, SandboxError
from marketplace.runtime.files import TREE_DEADLINE_S, chown_tree, remove_tree
from marketplace.runtime.health import (
    DEFAULT_FAILURE_THRESHOLD,
    Health,
    HealthLedger,
    OnDisable,
)
from marketplace.runtime.http import HostHttp, allowed_private_hosts_from_env
from marketplace.runtime.installation import Installation
from marketplace.runtime.launcher import LaunchPlan, ResourceLimits, plan_standard, plan_strict
from marketplace.runtime.permissions import ResultRefused, filter_arguments, normalize_result
from marketplace.runtime.proxy import GearFailure, GearProxy, GearResult, make_proxy
from marketplace.runtime.sandbox import (
    SandboxReport,
    check_level,
    default_min_level,
    level_rank,
    probe_sandbox_level,
)
from marketplace.runtime.services import Services
from marketplace.runtime.staging import Stage
from marketplace.runtime.worker import MAX_WAITERS, Worker
from marketplace.settings import BY_NAME

log = logging.getLogger(__name__)

#: Workers run under uids from this range (one per installation) when the engine is root;
#: the engine passes ``SANDBOX_UID_BASE`` in, this is the table's default.
UID_BASE: int = BY_NAME["SANDBOX_UID_BASE"].default
UID_COUNT = 65536

#: A batch's calls together may last at most this long (each still has its own
#: ``timeout_ms``): :meth:`Runtime.call_batch` sends at most
#: ``max(1, BATCH_DEADLINE_MS // timeout_ms)`` calls per batch message.
BATCH_DEADLINE_MS = 10_000
#: Most calls in one batch message.
MAX_BATCH_CALLS = 256


def _host_account(uid: int) -> bool:
    """Whether ``uid`` is a known account on this host (so it may own host files)."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@dataclass
class _Entry:
    inst: Installation
    worker: Worker
    health: Health
    proxy: GearProxy | None = None
    #: this runtime mounted the data dir's own filesystem (and unmounts it on stop)
    mounted: bool = False


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
                 report: SandboxReport | None = None, cgroups: CgroupHost | None = None,
                 data_quota: DataQuota | None = None, max_waiters: int = MAX_WAITERS,
                 services_factory: Callable[[Installation], Services] | None = None,
                 uid_base: int = UID_BASE):
        self.report = report or probe_sandbox_level()
        #: where each worker's control group is made (v2, v1, or none: rlimits only)
        self.cgroups = cgroups or probe_cgroups()
        #: the data dir's size and file-count quota, where the host can mount one
        self.data_quota = (data_quota or DataQuota()) if probe_quota()[0] else None
        self.level = level or self.report.level
        self.min_level = min_level or default_min_level()
        check_level(self.level, "dev-unsafe", report=self.report)
        self.failure_threshold = failure_threshold
        #: calls that may wait for a busy worker; more fail at once as ``busy``
        self.max_waiters = max_waiters
        self.on_disable = on_disable
        self.limits = limits or ResourceLimits()
        self.allow_private_hosts = (allowed_private_hosts_from_env()
                                    if allow_private_hosts is None else allow_private_hosts)
        #: the first of the uids workers run as when the engine is root
        self.uid_base = uid_base
        self._own_root = root_dir is None
        self.root_dir = Path(root_dir or tempfile.mkdtemp(prefix="gears-runtime-"))
        self.root_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # workers' dedicated uids traverse it (never list it)
            os.chmod(self.root_dir, stat.S_IMODE(self.root_dir.stat().st_mode) | 0o111)  # noqa: S103
        self.stage = Stage(self.root_dir / "stage")
        #: how an installation's ctx requests are served (vetting answers ``ctx.http``
        #: from a recorder); by default the real services
        self.services_factory = services_factory
        self._entries: dict[str, _Entry] = {}
        self._uids: dict[str, int] = {}
        #: the health of installations whose worker failed to start, kept for the next
        #: start so consecutive start failures add up and trip the breaker
        self._failed_starts: dict[str, Health] = {}
        #: what happened to each installation since the engine last took it, for the
        #: health every process shares (see :mod:`marketplace.runtime.health`)
        self.ledger = HealthLedger()
        self._lock = threading.Lock()

    # -- installations --------------------------------------------------------

    def _uid_for(self, installation: str) -> int | None:
        """The installation's dedicated uid when the engine is root (at every level)."""
        if os.geteuid() != 0:
            return None
        if installation not in self._uids:
            digest = int.from_bytes(hashlib.sha256(installation.encode()).digest()[:8], "big")
            base = self.uid_base
            uid = base + digest % UID_COUNT
            taken = set(self._uids.values())
            while uid in taken or _host_account(uid):
                uid = base + (uid - base + 1) % UID_COUNT
            self._uids[installation] = uid
        return self._uids[installation]

    def _require_unprivileged(self, uid: int | None) -> None:
        """Refuse a plan that would leave a worker as root or under the engine's uid."""
        if os.geteuid() == 0 and uid is None:
            raise SandboxError(f"no dedicated uid for a worker at level {self.level!r}; "
                               "refusing to run it as root", code="sandbox_uid_unavailable")
        if self.level == "standard" and uid is None:
            raise SandboxError(
                "the standard level runs workers under a dedicated uid, which needs a root "
                "engine; a worker under the engine's own uid could change the engine's files "
                "and processes", code="sandbox_uid_unavailable",
                hint="install bubblewrap for the strict level (scripts/install-system-deps.sh)")
        if uid is not None and self.level != "strict":
            self.stage.check_reachable()

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
            self._require_unprivileged(uid)
            plan = plan_standard(inst, uid=uid, data_dir=data, runtime_dir=self.root_dir,
                                 limits=self.limits, confined=self.level == "standard",
                                 stage=self.stage)
        if plan.owner is not None and os.geteuid() == 0 and data.lstat().st_uid != plan.owner:
            # only the worker's own uid may enter the data dir (mode 0700). Everything
            # under a dir the worker's uid owns was made by that uid, so the (gear-shaped,
            # maybe huge or deep) tree is only walked when the owner changes, and then by
            # chown in a child process with a deadline, never in this Python stack.
            chown_tree(data, plan.owner, time.monotonic() + TREE_DEADLINE_S)
        self._confine_resources(inst, plan)  # last: nothing after it can leak the group
        return plan

    def _confine_resources(self, inst: Installation, plan: LaunchPlan) -> None:
        """Give the plan its own control group (memory, pids, cpu, freezer).

        With ``pids.max`` in force RLIMIT_NPROC stays only as a looser backstop,
        so the kernel's refusal is counted in the group where it can be seen.
        """
        memory_mb = int(inst.manifest.limits.get("memory_mb", 128))
        try:
            plan.cgroup = self.cgroups.create(inst.id, self.limits.cgroup_limits(memory_mb))
        except CgroupError as exc:
            raise GearCallError(str(exc), installation=inst.id, gear=inst.gear,
                                code="sandbox_failed") from None
        if plan.cgroup is not None and resource.RLIMIT_NPROC in plan.rlimits:
            plan.rlimits[resource.RLIMIT_NPROC] = 2 * self.limits.processes

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
            health = (self._failed_starts.pop(inst.id, None)
                      or Health(inst.id, self.failure_threshold, self.on_disable,
                                ledger=self.ledger))
            if health.disabled:
                self._failed_starts[inst.id] = health
                raise GearDisabled(f"disabled: {health.reason}", installation=inst.id,
                                   gear=inst.gear)
            uid = self._uid_for(inst.id)
            self._require_unprivileged(uid)
            try:
                data = self._data_dir(inst)
                mounted = self._mount_data(inst, uid, data)
            except (GearCallError, OSError) as exc:
                self._failed_starts[inst.id] = health
                error = exc if isinstance(exc, GearCallError) else GearCallError(
                    f"could not prepare the data dir: {exc}", installation=inst.id,
                    gear=inst.gear, code="start_failed")
                health.failure(error.message, code=error.code)
                raise error from None
            services = (self.services_factory(inst) if self.services_factory else
                        Services(inst, HostHttp(inst.manifest.permissions.network,
                                                allow_private=self.allow_private_hosts)))
            worker = Worker(inst, lambda: self._planner(inst, uid, data), services, health,
                            max_waiters=self.max_waiters)
            self._entries[inst.id] = _Entry(inst, worker, health, mounted=mounted)
        try:
            worker.start_attributed()
        except GearCallError as exc:
            # the installation's failure like any other: counted, and kept for the next start
            health.failure(exc.message, timeout=exc.code in ("timeout", "start_timeout"),
                           code=exc.code)
            with self._lock:
                entry = self._entries.pop(inst.id, None)
                self._failed_starts[inst.id] = health
            if entry is not None:
                self._unmount_data(entry)
            raise
        self.ledger.started(inst.id)
        return worker

    def _mount_data(self, inst: Installation, uid: int | None, data: Path) -> bool:
        """Give the data dir its own size- and inode-limited filesystem (see datadir.py)."""
        if self.data_quota is None or uid is None:
            return False
        try:
            adopted = adopt_existing(data, self.data_quota, uid)
            return mount_quota(data, self.data_quota, uid) or adopted
        except OSError as exc:
            raise GearCallError(f"could not mount the data dir with its quota: {exc}",
                                installation=inst.id, gear=inst.gear,
                                code="sandbox_failed") from None

    def _unmount_data(self, entry: _Entry) -> None:
        if entry.mounted and entry.inst.data_dir is not None:
            try:
                unmount_quota(entry.inst.data_dir)
            except OSError as exc:
                logging.getLogger("gears.runtime").error(
                    "could not unmount the data dir of %s: %s", entry.inst.id, exc)

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
        """Stop the installation's worker (its failed-start count is kept: see :meth:`forget`)."""
        entry = self._entries.pop(installation, None)
        if entry is not None:
            entry.worker.stop()
            self._unmount_data(entry)

    def forget(self, installation: str) -> None:
        """Stop the worker and drop everything counted for ``installation`` (it changed:
        a new version, config, or an operator re-enabled it)."""
        self.stop(installation)
        with self._lock:
            self._failed_starts.pop(installation, None)

    def close(self) -> None:
        """Stop every worker and remove the runtime's own scratch directory."""
        for installation in list(self._entries):
            self.stop(installation)
        self.cgroups.release()
        if self._own_root:
            try:
                remove_tree(self.root_dir)
            except OSError as exc:
                log.error("could not remove the runtime's scratch dir %s: %s", self.root_dir, exc)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls and health -----------------------------------------------------

    def _prepare(self, entry: _Entry, hook: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments a gear receives: ``profile`` filtered, its own ``config``."""
        kwargs = {k: v for k, v in kwargs.items() if k != "ctx"}
        kwargs = filter_arguments(entry.inst.manifest, kwargs)
        kwargs["config"] = dict(entry.inst.config)
        return kwargs

    def _check_callable(self, entry: _Entry, hook: str) -> None:
        inst = entry.inst
        if entry.health.disabled:
            raise GearDisabled(f"disabled: {entry.health.reason}", installation=inst.id,
                               gear=inst.gear)
        if hook not in inst.manifest.hooks:
            raise GearCallError(f"{inst.gear} does not declare {hook}", installation=inst.id,
                                gear=inst.gear, code="hook_missing")

    def _settle(self, entry: _Entry, hook: str, outcome: Any,
                latency_ms: float) -> GearResult | GearFailure:
        """Type, check and count one call's outcome (a raw result or its GearCallError)."""
        inst, health = entry.inst, entry.health
        if isinstance(outcome, GearCallError):
            if outcome.code == "busy":
                health.rejected(outcome.message)
            elif (outcome.code not in ("too_large", "backoff")
                    or outcome.error_type == "ResultTooLarge"):
                health.failure(outcome.message, timeout=outcome.code == "timeout",
                               code=outcome.code)
            return GearFailure(inst.id, inst.gear, outcome)
        try:
            value = normalize_result(inst.manifest, hook, outcome)
        except ResultRefused as exc:
            err = GearCallError(str(exc), installation=inst.id, gear=inst.gear, code=exc.code)
            health.failure(err.message, latency_ms=latency_ms, code=exc.code)
            return GearFailure(inst.id, inst.gear, err)
        health.success(latency_ms)
        return GearResult(inst.id, inst.gear, value)

    def call(self, installation: str, hook: str, **kwargs: Any) -> Any:
        """Call one installation's ``hook``; the typed result or ``GearCallError``.

        ``config`` and ``ctx`` are the installation's own, whatever is passed.
        Every failure the gear is responsible for counts toward its breaker.
        """
        entry = self._entry(installation)
        self._check_callable(entry, hook)
        kwargs = self._prepare(entry, hook, kwargs)
        timeout_ms = int(entry.inst.manifest.limits.get("timeout_ms", 1000))
        began = time.monotonic()
        try:
            outcome: Any = entry.worker.call(hook, kwargs, timeout_ms)
        except GearCallError as exc:
            outcome = exc
        settled = self._settle(entry, hook, outcome, (time.monotonic() - began) * 1000)
        if isinstance(settled, GearFailure):
            settled.raise_()
        return settled.value

    def call_batch(self, installation: str, hook: str,
                   calls: list[dict[str, Any]]) -> list[GearResult | GearFailure]:
        """Call ``hook`` once per kwargs in ``calls``, in order, through batch messages.

        The same rules as :meth:`call` apply to every item: ``profile``
        filtered by the manifest's reads, the installation's ``config`` and
        ``ctx``, each result typed and checked against ``profile.write``, a
        deadline of ``timeout_ms`` per call, and each item counted in health
        as one call (so the breaker sees the same sequence of successes and
        failures as single calls would). When the breaker trips mid-batch the
        rest is not run and fails as ``disabled``. Never raises for the gear:
        every item is a :class:`GearResult` or an attributed :class:`GearFailure`.
        """
        entry = self._entry(installation)
        inst = entry.inst
        if hook not in inst.manifest.hooks:
            self._check_callable(entry, hook)
        timeout_ms = int(inst.manifest.limits.get("timeout_ms", 1000))
        out: list[GearResult | GearFailure | None] = [None] * len(calls)
        chunk: list[int] = []
        encoded: list[bytes] = []
        size = BATCH_OVERHEAD_BYTES
        per_batch = min(MAX_BATCH_CALLS, max(1, BATCH_DEADLINE_MS // max(1, timeout_ms)))
        # every call is encoded before any runs: arguments that are not JSON are the
        # caller's bug (ValueError/TypeError, as for a single call), not a half-run batch
        payloads = [dumps(self._prepare(entry, hook, kwargs)) for kwargs in calls]
        for i, data in enumerate(payloads):
            if len(data) + BATCH_OVERHEAD_BYTES > MAX_MESSAGE_BYTES:
                out[i] = GearFailure(inst.id, inst.gear, GearCallError(
                    f"the call's arguments are too large: {len(data)} bytes",
                    installation=inst.id, gear=inst.gear, code="too_large"))
                continue
            if chunk and (len(chunk) >= per_batch
                          or size + len(data) + 1 > MAX_MESSAGE_BYTES):
                self._run_batch(entry, hook, chunk, encoded, timeout_ms, out)
                chunk, encoded, size = [], [], BATCH_OVERHEAD_BYTES
            chunk.append(i)
            encoded.append(data)
            size += len(data) + 1
        if chunk:
            self._run_batch(entry, hook, chunk, encoded, timeout_ms, out)
        return [r if r is not None else self._disabled(entry) for r in out]

    def _disabled(self, entry: _Entry) -> GearFailure:
        inst = entry.inst
        return GearFailure(inst.id, inst.gear, GearDisabled(
            f"disabled: {entry.health.reason}", installation=inst.id, gear=inst.gear))

    def _run_batch(self, entry: _Entry, hook: str, indexes: list[int], encoded: list[bytes],
                   timeout_ms: int, out: list[GearResult | GearFailure | None]) -> None:
        if entry.health.disabled:
            return  # left None: reported as disabled

        def on_item(k: int, outcome: Any, latency_ms: float) -> bool:
            out[indexes[k]] = self._settle(entry, hook, outcome, latency_ms)
            return not entry.health.disabled

        try:
            entry.worker.call_batch(hook, encoded, timeout_ms, on_item)
        except GearCallError as exc:  # not sent at all: nothing ran, nothing is counted
            for i in indexes:
                if out[i] is None:
                    out[i] = GearFailure(entry.inst.id, entry.inst.gear, exc)

    def refuse(self, installation: str, code: str, message: str) -> None:
        """Count a result the engine refused when applying it (a patch overflowing a
        number or the profile's size) as ``installation``'s failure with ``code``."""
        entry = self._entries.get(installation)
        if entry is not None:
            entry.health.refused(message, code)

    def enable(self, installation: str) -> None:
        """Re-enable an installation the circuit breaker disabled."""
        if self._failed_starts.pop(installation, None) is not None:
            return
        self._entry(installation).health.enable()

    def health(self) -> dict[str, dict[str, Any]]:
        """Counters, latency percentiles and disable reasons, per installation.

        Reads counters only: it never waits for a worker or a gear's turn, so a
        health check answers while every gear hangs.
        """
        failed = {i: {**h.snapshot(), "gear": None, "pid": None, "level": self.level,
                      "limits": self.cgroups.level, "output_dropped": 0, "sandbox": {}}
                  for i, h in list(self._failed_starts.items())}
        return failed | {i: {**e.health.snapshot(), "gear": e.inst.gear, "pid": e.worker.pid,
                    "level": self.level, "limits": self.cgroups.level,
                    "output_dropped": e.worker.output.dropped_lines,
                    "data_full": e.worker.data_full,
                    "sandbox": dict(e.worker.sandbox)}
                for i, e in list(self._entries.items())}
