"""The engine's side of the runtime: which workers run, and the plugin manager per workspace.

Each app gets one :class:`EngineManager`, which owns its
:class:`~marketplace.runtime.Runtime` (built on first use from the app's
runtime settings, with the manager's own breaker callback, and closed by
:meth:`EngineManager.shutdown`), knows the app's database and blob store and
keeps, per workspace, a pluggy ``PluginManager`` whose plugins are the
runtime's proxies of that workspace's enabled installations. Nothing is held
in module globals: an engine node process has one app, so one manager and one
runtime, and an installation has at most one worker per node.

Workers start lazily: the first call of a hook in a workspace starts the
workers of the enabled installations declaring that hook (fetching the
installed version through the :class:`~marketplace.runtime.loader.GearCache`,
which verifies it before it runs). A workspace's list of installations is
re-read from the database every :data:`REFRESH_SECONDS`, so a change made by
another process (another node, the web server) is picked up even without
its outbox row reaching this node; lifecycle work (``gear_install``,
uninstall cleanup) comes through the ``engine_outbox`` outbox
(:mod:`marketplace.engine.lifecycle`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from gears_sdk.hookspecs import get_plugin_manager
from gears_sdk.manifest import Manifest, Permissions, load_manifest
from marketplace.blobs import get_blob_store
from marketplace.db import database
from marketplace.engine.health_sync import HealthSync
from marketplace.engine.state import DbStateStore
from marketplace.engine.upgrades import reconcile_engine_version
from marketplace.models import Gear, GearVersion, Workspace
from marketplace.registry.signing import VersionSignature, keyring, sign_document
from marketplace.registry.trust_api import killlist_document
from marketplace.runtime import GearCallError, Installation, Runtime
from marketplace.runtime.datadir import IMAGE_SUFFIX, remove_data
from marketplace.runtime.errors import SandboxError
from marketplace.runtime.killswitch import KillListPoller
from marketplace.runtime.loader import GearCache, LoaderError, StoreFetcher
from marketplace.runtime.signatures import SignedManifest, verified_load
from marketplace.runtime.turns import Turns
from marketplace.settings import engine_version, runtime_options
from marketplace.workspaces.models import Installation as InstallationRow
from marketplace.workspaces.models import InstallationStatus
from marketplace.workspaces.outbox import EngineEvent
from marketplace.workspaces.planning import engine_mismatch
from marketplace.workspaces.secrets import installation_secrets
from marketplace.workspaces.service import mark_failed

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
#: How long a call waits for another thread starting the same installation's worker.
START_WAIT_S = 20.0
#: A worker that could not start is tried again after this backoff (doubling).
START_RETRY_BASE_S = 1.0
START_RETRY_MAX_S = 60.0
#: A failed check of the installations against the engine version is tried again after this.
RECONCILE_RETRY_S = 30.0

@dataclass(frozen=True)
class Outcome:
    """How one gear call went, for the ``gears`` field of responses and the decision log."""

    installation: str
    gear: str
    hook: str
    ok: bool
    error: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"installation": self.installation, "gear": self.gear,
                               "hook": self.hook, "ok": self.ok}
        if not self.ok:
            out["error"], out["message"] = self.error, self.message
        return out


@dataclass
class InstalledGear:
    """What the engine knows about one installation without touching its worker."""

    id: str
    workspace_id: int
    gear: str
    version: str
    kind: str
    hooks: frozenset[str]
    reads: tuple[str, ...]
    runnable: bool
    fingerprint: tuple[Any, ...]
    #: the installation's status as the engine sees it (``suspended`` when the installed
    #: version cannot run on this engine) and why it does not run
    status: str = InstallationStatus.active.value
    reason: str | None = None
    #: What the manifest grants; the engine's own checks (connector records) use it.
    permissions: Permissions = field(default_factory=Permissions)


@dataclass
class WorkspaceGears:
    """One workspace's installations and the plugin manager holding their started proxies."""

    name: str
    id: int
    installations: dict[str, InstalledGear] = field(default_factory=dict)
    pm: pluggy.PluginManager = field(default_factory=get_plugin_manager)
    registered: set[str] = field(default_factory=set)
    load_failures: dict[str, Outcome] = field(default_factory=dict)
    #: installation id -> (consecutive start failures, monotonic time of the next try)
    retry_at: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: installation id -> what its last failed start depended on (:meth:`EngineManager.cause`):
    #: when that changes the start is tried again at once, whatever the backoff says
    causes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    checked_at: float = 0.0

    def reads_events(self) -> bool:
        """Whether a runnable installation reads the profile's event history."""
        return any(g.runnable and any(r == "events" or r.startswith(("events.", "*"))
                                      for r in g.reads)
                   for g in self.installations.values())


def _installed(row: InstallationRow, manifest: dict[str, Any], engine: str) -> InstalledGear:
    perms = (manifest.get("permissions") or {}).get("profile") or {}
    # A version that cannot run on this engine never starts, whatever the row says yet.
    mismatch = engine_mismatch(manifest, engine)
    status = row.status if mismatch is None else InstallationStatus.suspended
    return InstalledGear(
        id=row.id, workspace_id=row.workspace_id, gear=row.gear.name, version=row.version,
        kind=str(manifest.get("kind")), hooks=frozenset(manifest.get("hooks") or ()),
        reads=tuple(perms.get("read") or ()),
        permissions=Permissions.from_dict(manifest.get("permissions") or {}),
        runnable=row.enabled and status is InstallationStatus.active,
        status=status.value,
        reason=(f"{row.gear.name} {row.version} {mismatch}" if mismatch is not None
                else row.disabled_reason),
        fingerprint=(row.version, repr(sorted((row.config or {}).items())),
                     row.secrets_encrypted, row.enabled, row.status.value))


def _tree_stamp(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """``(path, size, mtime, inode)`` of every file under ``root`` (empty when absent):
    changes when a cached file is modified, replaced or restored."""
    out = []
    try:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns, st.st_ino))
    except OSError:
        return ()
    return tuple(sorted(out))


def data_root(app: Flask) -> Path:
    """Where the app's installations' data dirs live (``GEAR_DATA_PATH``)."""
    configured = app.config["GEAR_DATA_PATH"]
    return (Path(configured).resolve() if configured
            else Path(app.instance_path) / "engine" / "data")


class EngineManager:
    """Starts, calls and stops one app's installations in the runtime it owns."""

    def __init__(self, app: Flask, runtime: Runtime | None = None):
        self.app = app
        self._runtime = runtime
        #: whether :meth:`shutdown` closes the runtime (it built it) or leaves it (attached)
        self._owns_runtime = False
        if runtime is not None:
            runtime.on_disable = self.queue_failure
        #: installations whose worker this manager started in its runtime
        self.started: set[str] = set()
        self._reconcile_lock = threading.Lock()
        self._reconciled = False
        self._reconcile_after = 0.0
        root = Path(app.instance_path) / "engine"
        self.cache = GearCache(root / "gear-cache", StoreFetcher(get_blob_store(app)))
        self.data_root = data_root(app)
        self.sessions: Callable[[], Session] = database(app).sessionmaker
        self._workspaces: dict[str, WorkspaceGears] = {}
        self._lock = threading.RLock()
        self._failures: list[tuple[str, str]] = []
        self._starting: dict[str, Turns] = {}
        self.killswitch: KillListPoller | None = None
        #: installation ids of this app's database seen by this manager: only their
        #: health is written to it (a runtime may be shared by several apps in tests)
        self._known: set[str] = set()
        self.health_sync: HealthSync | None = None

    @property
    def runtime(self) -> Runtime:
        """The manager's runtime, built on first use with the app's runtime settings;
        its circuit breaker reports to :meth:`queue_failure`."""
        with self._lock:
            if self._runtime is None:
                self._runtime = Runtime(on_disable=self.queue_failure,
                                        **runtime_options(self.app.config))
                self._owns_runtime = True
                atexit.register(self.shutdown)
                fresh = True
            else:
                fresh = False
        if fresh:
            self._sync_health(self._runtime)
            self.start_killswitch()
        return self._runtime

    def _sync_health(self, runtime: Runtime) -> None:
        """Write ``runtime``'s health deltas for this app's installations to its database,
        about once a second from a thread (not with an in-memory SQLite database: its one
        shared connection must not commit under a request; there the requests flush)."""
        if self.health_sync is not None:
            self.health_sync.stop()
        engine = database(self.app).engine
        self.health_sync = HealthSync(engine, runtime.ledger, self._known.__contains__)
        if not (engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")):
            self.health_sync.start()

    def runtime_if_built(self) -> Runtime | None:
        """The runtime, or ``None`` while no gear has needed it (nothing is built to answer)."""
        return self._runtime

    def start_killswitch(self, interval: float | None = None) -> KillListPoller | None:
        """Poll the registry's signed kill list and stop quarantined gears' workers.

        The engine runs beside its registry, so the list is built from the same
        database and signed with the same key the ``/api/v1/killlist`` endpoint
        uses, then verified like any fetched list. Without a signing key (a
        registry never initialized) there is nothing to verify against: say so.
        """
        if self.killswitch is not None:
            return self.killswitch
        ring = keyring(self.app)
        keys = ring.public_keys()
        if not keys:
            log.warning("no registry signing key: the kill list is not polled "
                        "(run `marketplace init`)")
            return None
        app = self.app

        def fetch() -> dict[str, Any]:
            with app.app_context():
                return sign_document(ring, killlist_document())

        every = interval or float(app.config["KILLLIST_INTERVAL_SECONDS"])
        self.killswitch = KillListPoller(fetch, keys, self.runtime, every).start()
        return self.killswitch

    def attach_runtime(self, runtime: Runtime) -> None:
        """Use ``runtime`` instead of building one (tests share one across apps); its
        breaker now reports to this manager, and :meth:`shutdown` leaves it open."""
        self.shutdown()
        runtime.on_disable = self.queue_failure
        self._runtime = runtime
        self._owns_runtime = False
        self._sync_health(runtime)

    # -- workspaces ---------------------------------------------------------------------

    def reconcile(self) -> None:
        """Suspend or resume installations for this engine's version, once per manager
        (the first use of the engine); a failure is logged and tried again later."""
        with self._reconcile_lock:
            if self._reconciled or time.monotonic() < self._reconcile_after:
                return
            try:
                reconcile_engine_version(self.app)
                self._reconciled = True
            except Exception:
                log.exception("could not check installations against engine %s",
                              engine_version(self.app.config))
                self._reconcile_after = time.monotonic() + RECONCILE_RETRY_S

    def workspace(self, session: Session, workspace: Workspace) -> WorkspaceGears:
        """The workspace's gears, re-read from the database when the last look is stale."""
        self.reconcile()
        with self._lock:
            wg = self._workspaces.get(workspace.name)
            if wg is None or wg.id != workspace.id:
                wg = WorkspaceGears(workspace.name, workspace.id)
                self._workspaces[workspace.name] = wg
            if time.monotonic() - wg.checked_at > REFRESH_SECONDS:
                self._refresh(session, wg)
            return wg

    def _refresh(self, session: Session, wg: WorkspaceGears) -> None:
        rows = session.execute(
            select(InstallationRow, GearVersion.manifest)
            .join(Gear, InstallationRow.gear_id == Gear.id)
            .join(GearVersion, (GearVersion.gear_id == Gear.id)
                  & (GearVersion.version == InstallationRow.version))
            .where(InstallationRow.workspace_id == wg.id)).all()
        engine = engine_version(self.app.config)
        fresh = {row.id: _installed(row, manifest, engine) for row, manifest in rows}
        self._known.update(fresh)
        for iid, old in list(wg.installations.items()):
            new = fresh.get(iid)
            if new is None or new.fingerprint != old.fingerprint:
                self._retire(wg, iid)
        wg.installations = fresh
        wg.checked_at = time.monotonic()

    def _retire(self, wg: WorkspaceGears, installation: str) -> None:
        """Unregister and stop an installation's worker (the next use starts it afresh)."""
        if installation in wg.registered:
            plugin = wg.pm.get_plugin(installation)
            if plugin is not None:
                wg.pm.unregister(plugin, name=installation)
            wg.registered.discard(installation)
        wg.load_failures.pop(installation, None)
        wg.retry_at.pop(installation, None)
        wg.causes.pop(installation, None)
        self.runtime.forget(installation)
        self.started.discard(installation)

    def reread(self, session: Session, workspace: Workspace) -> None:
        """Re-read ``workspace``'s installations now (an outbox row said one changed): a
        worker whose installation changed (version, config, secrets, enabled, status) or
        went is retired; an unchanged one keeps running, with any call it is serving.
        (No version reconcile here: its own suspensions arrive through this path.)"""
        with self._lock:
            wg = self._workspaces.get(workspace.name)
            if wg is not None and wg.id == workspace.id:
                self._refresh(session, wg)

    def forget(self, workspace: str | None, installation: str) -> None:
        """Drop what is known about ``installation`` now and stop its worker, changed or not
        (it was uninstalled; the next use of a still-installed one starts it afresh)."""
        with self._lock:
            for wg in self._workspaces.values():
                if workspace in (None, wg.name):
                    if installation in wg.installations or installation in wg.registered:
                        self._retire(wg, installation)
                    wg.installations.pop(installation, None)
                    wg.checked_at = 0.0

    # -- starting -----------------------------------------------------------------------

    def _start(self, session: Session, wg: WorkspaceGears, inst: InstalledGear) -> None:
        """Start ``inst``'s worker (outside the manager's lock: a gear that is slow to
        load delays only the callers that need it) and register its proxy."""
        row = session.get(InstallationRow, inst.id)
        if row is None:
            raise LoaderError(f"installation {inst.id} no longer exists", code="not_found")
        self.start_worker(session, row.gear.name, row.version, inst.id, wg.name, wg.id,
                          dict(row.config or {}), installation_secrets(row))
        with self._lock:
            # Changed while it started? A re-read of the workspace (another installation's
            # change, the periodic refresh) makes new records of unchanged installations too:
            # only a changed fingerprint (version, config, secrets, enabled, status) counts.
            now = wg.installations.get(inst.id)
            if now is None or now.fingerprint != inst.fingerprint:
                self.runtime.stop(inst.id)
                raise GearCallError(f"{inst.gear} changed while its worker started; "
                                    "the next call starts the new one",
                                    installation=inst.id, gear=inst.gear, code="restarting")
            plugin = self.runtime.proxy(inst.id)
            wg.pm.register(plugin, name=inst.id)
            wg.registered.add(inst.id)

    def _start_turns(self, installation: str) -> Turns:
        with self._lock:
            turns = self._starting.get(installation)
            if turns is None:
                turns = self._starting[installation] = Turns(self.runtime.max_waiters)
            return turns

    def _start_one(self, session: Session, wg: WorkspaceGears, inst: InstalledGear,
                   hook: str, cause: tuple[Any, ...] = ()) -> Outcome | None:
        """Start one installation, one thread at a time; why it could not, or ``None``.
        ``cause`` is what the start depends on, read before it (kept with a failure)."""

        def busy(why: str) -> GearCallError:
            return GearCallError(f"the worker is starting for another call ({why})",
                                 installation=inst.id, gear=inst.gear, code="busy")

        try:
            with self._start_turns(inst.id).take(START_WAIT_S, busy):
                if inst.id in wg.registered:
                    return None
                self._start(session, wg, inst)
        except (GearCallError, LoaderError, SandboxError) as exc:
            # A gear that cannot start (refused by the sandbox level or the kill list,
            # tampered, missing, failing to load) fails alone; the engine keeps serving.
            # The runtime has counted a gear's own start failure toward its breaker.
            log.error("cannot start %s (%s): %s", inst.gear, inst.id, exc)
            out = Outcome(inst.id, inst.gear, hook, False, getattr(exc, "code", "load_failed"),
                          str(exc))
            if out.error not in ("busy", "restarting"):  # why it is not running, for everyone
                self.runtime.ledger.not_running(inst.id, out.error or "load_failed", str(exc))
            if out.error != "busy":
                with self._lock:
                    # the same cause failing again backs off (doubling); a new one starts over
                    same = wg.causes.get(inst.id) == cause
                    tries = (wg.retry_at.get(inst.id, (0, 0.0))[0] if same else 0) + 1
                    wg.retry_at[inst.id] = (tries, time.monotonic() + min(
                        START_RETRY_MAX_S, START_RETRY_BASE_S * 2 ** (tries - 1)))
                    wg.load_failures[inst.id] = out
                    wg.causes[inst.id] = cause
            return out
        with self._lock:
            wg.load_failures.pop(inst.id, None)
            wg.retry_at.pop(inst.id, None)
            wg.causes.pop(inst.id, None)
        return None

    def cause(self, session: Session, inst: InstalledGear) -> tuple[Any, ...]:
        """What starting ``inst`` depends on besides its installation row (whose changes
        retire it already): the version's quarantine flag and archive, its signature, the
        kill list in force and the cached files (path, size, mtime, inode). A start that
        failed is tried again at once when this changes: a release from quarantine, a new
        signature or a restored cache file brings the gear back on the next call, while an
        unchanged cause keeps its backoff."""
        row = session.execute(
            select(GearVersion.id, GearVersion.quarantined, GearVersion.sha256)
            .join(Gear, GearVersion.gear_id == Gear.id)
            .where(Gear.name == inst.gear, GearVersion.version == inst.version)).first()
        if row is None:
            return (inst.fingerprint, None)
        sig = session.execute(select(VersionSignature.key_id, VersionSignature.signature)
                              .where(VersionSignature.version_id == row.id)).first()
        poller = self.killswitch
        return (inst.fingerprint, bool(row.quarantined), row.sha256,
                tuple(sig) if sig is not None else None,
                poller.issued_at if poller is not None else None,
                _tree_stamp(self.cache.path_for(row.sha256)))

    @staticmethod
    def _signed(session: Session, row: GearVersion, gear: str) -> SignedManifest:
        """What the registry signed for ``row``: every load is checked against it (the
        signature, then each unpacked file's hash), so a tampered cache never runs."""
        sig = session.get(VersionSignature, row.id)
        return SignedManifest(
            name=gear, version=row.version, sha256=row.sha256,
            files=dict(sig.files) if sig else {},
            signature=sig.signature if sig else None, key_id=sig.key_id if sig else None)

    def start_worker(self, session: Session, gear: str, version: str, installation: str,
                     workspace: str, workspace_id: int, config: dict[str, Any],
                     secrets: dict[str, Any]) -> None:
        """Fetch, verify and start one installation's worker in the process runtime."""
        row = session.scalar(select(GearVersion).join(Gear).where(
            Gear.name == gear, GearVersion.version == version))
        if row is None:
            raise LoaderError(f"{gear} {version} is not in the registry", code="not_found")
        if row.quarantined:
            raise LoaderError(f"{gear} {version} is quarantined and may not run",
                              code="quarantined")
        mismatch = engine_mismatch(row.manifest, engine_version(self.app.config))
        if mismatch is not None:  # whoever asks (a call, a sync, gear_uninstall)
            raise LoaderError(f"{gear} {version} {mismatch}", code="engine_incompatible")
        self._refresh_killlist(row, gear)
        gear_dir = verified_load(self.cache, self._signed(session, row, gear),
                                 keyring(self.app).public_keys())
        manifest: Manifest = load_manifest(gear_dir)
        inst = Installation(
            id=installation, workspace=workspace, gear_dir=gear_dir, manifest=manifest,
            config=config, secrets={k: str(v) for k, v in secrets.items()},
            data_dir=self.data_root / installation,
            state=DbStateStore(self.sessions, installation, workspace_id,
                               int(manifest.limits.get("state_kb", 256)), gear))
        self.started.add(installation)
        self.runtime.stop(installation)
        self.runtime.start(inst)

    def _refresh_killlist(self, row: GearVersion, gear: str) -> None:
        """The database says ``row`` is not quarantined; when the kill list in force
        still names it (released since the last poll), poll now rather than refuse it
        until the next poll."""
        poller = self.killswitch
        if poller is None:
            return
        if any(e.sha256 == row.sha256 or (e.name == gear and e.version == row.version)
               for e in list(poller.entries)):
            poller.poll_once()

    def _stopped_underneath(self, wg: WorkspaceGears, installation: str) -> bool:
        """Whether a registered installation's worker is gone from the runtime (the kill
        list stopped it); its proxy is dropped so the next call starts it again."""
        try:
            self.runtime.installation(installation)
            return False
        except GearCallError:
            plugin = wg.pm.get_plugin(installation)
            if plugin is not None:
                wg.pm.unregister(plugin, name=installation)
            wg.registered.discard(installation)
            return True

    def ensure(self, session: Session, wg: WorkspaceGears, hook: str,
               only: Iterable[str] | None = None) -> list[Outcome]:
        """Start the runnable installations declaring ``hook`` (or just ``only``);
        the outcomes of those that could not start.

        One whose last start failed is tried again once its backoff is over, or at
        once when what the start depends on changed (:meth:`cause`)."""
        wanted = set(only) if only is not None else None
        failed: list[Outcome] = []
        todo: list[InstalledGear] = []
        waiting: list[tuple[InstalledGear, Outcome, tuple[Any, ...] | None]] = []
        now = time.monotonic()
        with self._lock:
            for inst in list(wg.installations.values()):
                if not inst.runnable or hook not in inst.hooks:
                    continue
                if wanted is not None and inst.id not in wanted:
                    continue
                if inst.id in wg.registered and not self._stopped_underneath(wg, inst.id):
                    continue
                if inst.id in wg.load_failures and now < wg.retry_at.get(inst.id, (0, 0.0))[1]:
                    waiting.append((inst, wg.load_failures[inst.id], wg.causes.get(inst.id)))
                    continue
                todo.append(inst)
        causes: dict[str, tuple[Any, ...]] = {}
        for inst, last, before in waiting:
            causes[inst.id] = self.cause(session, inst)
            if causes[inst.id] == before:
                failed.append(last)
            else:
                todo.append(inst)
        for inst in todo:
            cause = causes.get(inst.id) or self.cause(session, inst)
            out = self._start_one(session, wg, inst, hook, cause)
            if out is not None:
                failed.append(out)
        return failed

    def hook(self, session: Session, wg: WorkspaceGears,
             hook: str) -> tuple[pluggy.HookCaller, list[Outcome]]:
        """``pm.hook.<hook>`` over every runnable installation declaring it."""
        failed = self.ensure(session, wg, hook)
        return getattr(wg.pm.hook, hook), failed

    def hook_for(self, session: Session, wg: WorkspaceGears, installation: str,
                 hook: str) -> tuple[pluggy.HookCaller | None, Outcome | None]:
        """A caller of ``hook`` reaching only ``installation``, or why there is none."""
        inst = wg.installations.get(installation)
        if inst is None:
            return None, Outcome(installation, "?", hook, False, "not_installed",
                                 "the installation does not exist in this workspace")
        if inst.status == InstallationStatus.suspended.value:
            return None, Outcome(inst.id, inst.gear, hook, False, "suspended",
                                 f"the installation is suspended: {inst.reason}")
        if not inst.runnable:
            return None, Outcome(inst.id, inst.gear, hook, False, "disabled",
                                 "the installation is disabled")
        if hook not in inst.hooks:
            return None, Outcome(inst.id, inst.gear, hook, False, "hook_missing",
                                 f"{inst.gear} does not implement {hook}")
        failed = self.ensure(session, wg, hook, only=[installation])
        if failed:
            return None, failed[0]
        others = [wg.pm.get_plugin(i) for i in wg.registered if i != installation]
        return wg.pm.subset_hook_caller(hook, remove_plugins=[p for p in others if p]), None

    # -- failures, health, shutdown -----------------------------------------------------

    def queue_failure(self, installation: str, reason: str) -> None:
        """The breaker tripped during a call; persisted by :meth:`flush_failures`."""
        with self._lock:
            self._failures.append((installation, reason))

    def flush_failures(self) -> None:
        """Mark queued installations failed (after the caller's transaction ended:
        on SQLite a second writer would wait for the first)."""
        with self._lock:
            pending, self._failures = self._failures, []
        for installation, reason in pending:
            session = self.sessions()
            try:
                mark_failed(session, installation, reason)
            except Exception:
                log.exception("cannot mark installation %s failed", installation)
                session.rollback()
            finally:
                session.close()
        if self.health_sync is not None:
            self.health_sync.flush_urgent()

    def refuse(self, installation: str, code: str, message: str) -> None:
        """Count a result refused when the engine applied it as ``installation``'s failure."""
        if self._runtime is not None:
            self._runtime.refuse(installation, code, message)

    def remove_data(self, installation: str) -> None:
        """Delete the installation's data dir and its filesystem image for good."""
        try:
            remove_data(self.data_root / installation)
        except OSError as exc:
            log.error("could not remove the data of installation %s: %s", installation, exc)

    def remove_orphan_data(self) -> list[str]:
        """Delete the data dirs of installations that no longer exist and wait for no
        uninstall in the outbox; their ids. An uninstall's cleanup runs on the one node
        that claims it, so a node's own copies of others' data dirs (scratch) go here,
        when the node starts (before it drains the outbox)."""
        try:
            names = [p.name for p in self.data_root.iterdir()]
        except OSError:
            return []
        found = sorted({n.split(".", 1)[0] for n in names
                        if len(n) >= 32 and all(c in "0123456789abcdef" for c in n[:32])
                        and n[32:] in ("", IMAGE_SUFFIX, ".mounted-by")})
        kept: set[str] = set()
        with self.sessions() as session:
            for start in range(0, len(found), 500):
                chunk = found[start:start + 500]
                kept.update(session.scalars(select(InstallationRow.id)
                                            .where(InstallationRow.id.in_(chunk))))
                kept.update(session.scalars(select(EngineEvent.installation_id)
                                            .where(EngineEvent.installation_id.in_(chunk))))
        gone = [iid for iid in found if iid not in kept]
        for iid in gone:
            self.remove_data(iid)
        return gone

    def close(self) -> None:
        """Stop every worker this manager started (the runtime stays open)."""
        with self._lock:
            if self._runtime is None:
                self._workspaces.clear()
                return
            for wg in self._workspaces.values():
                for iid in list(wg.registered):
                    self._retire(wg, iid)
            self._workspaces.clear()
            for iid in list(self.started):
                self._runtime.stop(iid)
            self.started.clear()

    def shutdown(self) -> None:
        """Stop the kill-list poller and every worker; close the runtime when this manager
        built it (its control groups, data-dir mounts and scratch directory go with it)."""
        if self.killswitch is not None:
            self.killswitch.stop()
            self.killswitch = None
        self.close()
        with self._lock:
            runtime, owned = self._runtime, self._owns_runtime
            if owned:
                self._runtime, self._owns_runtime = None, False
        if self.health_sync is not None:  # after the workers stopped: their last counts
            self.health_sync.stop()
        if owned and runtime is not None:
            atexit.unregister(self.shutdown)
            runtime.close()
