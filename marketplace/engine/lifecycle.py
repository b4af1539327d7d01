"""The engine's answers to installation changes, taken from the ``engine_outbox`` outbox.

The workspaces service writes one row per change in the change's own transaction
(:mod:`marketplace.workspaces.outbox`); engine nodes claim rows with a conditional
update, so exactly one node acts on each:

* installed: run ``gear_install`` when the gear declares it; if it fails (the
  hook's ``decide`` policy) the installation is marked failed with the gear's
  message, so the user sees why (the install itself is already committed);
* changed (upgraded, config changed, enabled or disabled): retire the worker on
  the claiming node; the next use starts the right version with the right
  config, or nothing. Other nodes retire theirs when their every-
  :data:`~marketplace.engine.manager.REFRESH_SECONDS` re-read of the workspace
  sees the installation's fingerprint change;
* uninstalled: run ``gear_uninstall`` with the last config and the secrets
  kept encrypted in the row (under the hook's ``notify`` policy its failures are
  logged and do not stop anything),
  stop the worker, delete the installation's state, cursors, schedule and sync
  history, and its data directory.

A node drains the outbox every :data:`POLL_SECONDS` (:meth:`Lifecycle.start`);
in an embedded engine (no engine nodes: tests, scripts) the in-process
:mod:`marketplace.workspaces.events` signal drains it at once, by the same code.
A row whose work raises is retried after a backoff, by any node; a node killed
mid-way leaves a claim whose lease runs out.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gears_sdk.hookspecs import get_plugin_manager
from marketplace.engine.manager import EngineManager
from marketplace.engine.models import (
    ConnectorCursor,
    InstallationState,
    SyncRun,
    SyncSchedule,
)
from marketplace.models import Gear, GearVersion, Workspace
from marketplace.runtime import GearFailure, GearResult, HookDeclined, settle
from marketplace.workspaces import events, outbox
from marketplace.workspaces.models import Installation as InstallationRow
from marketplace.workspaces.outbox import EngineEvent, EventKind
from marketplace.workspaces.secrets import box_for

log = logging.getLogger(__name__)

_ENGINE_TABLES: tuple[Any, ...] = (InstallationState, ConnectorCursor, SyncSchedule, SyncRun)

#: Seconds between a node's looks at the outbox.
POLL_SECONDS = 1.0


def node_id() -> str:
    """A name for this process among the nodes sharing a database (host, pid, nonce)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lifecycle:
    """Drains the outbox into one :class:`EngineManager`."""

    def __init__(self, engine: EngineManager, node: str | None = None):
        self.engine = engine
        self.node = node or node_id()
        self._signals = (events.on_installed, events.on_upgraded, events.on_config_changed,
                         events.on_enabled_changed, events.on_uninstalled)
        self._state = threading.Lock()
        self._wanted = 0
        self._running = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: rows this lifecycle acted on, by kind (``/engine/v1/_node/status`` shows them)
        self.done: dict[str, int] = {k.value: 0 for k in EventKind}

    # -- embedded: the in-process signals ---------------------------------------------

    def connect(self) -> None:
        for signal in self._signals:
            signal.connect(self.notified)

    def disconnect(self) -> None:
        for signal in self._signals:
            signal.disconnect(self.notified)

    def notified(self, _event: events.InstallationEvent) -> None:
        self.drain()

    # -- a node: the poller -----------------------------------------------------------

    def start(self, interval: float = POLL_SECONDS) -> Lifecycle:
        """Drain the outbox every ``interval`` seconds in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, args=(interval,),
                                            name="gears-outbox", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _poll(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception:
                log.exception("draining the engine outbox failed; retrying in %s s", interval)
            self._stop.wait(interval)

    # -- draining ---------------------------------------------------------------------

    def drain(self) -> int:
        """Act on every claimable row; how many. A call while another thread (or this one,
        from inside a row's work) is draining leaves the work to that drain, which looks
        again before it ends, so no row announced meanwhile waits for the next poll."""
        with self._state:
            self._wanted += 1
            if self._running:
                return 0
            self._running = True
        handled = 0
        try:
            while True:
                with self._state:
                    if not self._wanted:
                        self._running = False
                        return handled
                    self._wanted = 0
                while True:
                    with self.engine.sessions() as session:
                        rows = outbox.claim(session, self.node)
                    if not rows:
                        break
                    for row in rows:
                        handled += self._handle(row)
        except BaseException:
            with self._state:
                self._running = False
            raise

    def _handle(self, row: EngineEvent) -> int:
        try:
            if row.kind is EventKind.installed:
                self.installed(row)
            elif row.kind is EventKind.changed:
                self.changed(row)
            else:
                self.uninstalled(row)
        except Exception as exc:
            log.exception("engine event %s (%s of %s) failed", row.id, row.kind.value,
                          row.installation_id)
            with self.engine.sessions() as session:
                if outbox.failed(session, row, self.node, f"{type(exc).__name__}: {exc}"):
                    log.error("engine event %s (%s of %s) dropped after %s attempts", row.id,
                              row.kind.value, row.installation_id, row.attempts)
            return 0
        with self.engine.sessions() as session:
            outbox.finish(session, row, self.node)
        self.done[row.kind.value] += 1
        return 1

    def _workspace(self, session: Session, row: EngineEvent) -> Workspace | None:
        return session.scalar(select(Workspace).where(Workspace.name == row.workspace))

    def installed(self, event: EngineEvent) -> None:
        iid = event.installation_id
        with self.engine.sessions() as session:
            row = session.get(InstallationRow, iid)
            workspace = self._workspace(session, event)
            if row is None or workspace is None or row.workspace_id != workspace.id:
                return  # uninstalled meanwhile: its own row follows
            self.engine.reread(session, workspace)
            wg = self.engine.workspace(session, workspace)
            caller, why = self.engine.hook_for(session, wg, iid, "gear_install")
            reason = None
            if caller is not None:
                reason = install_refused(caller(config=None, ctx=None))
            elif why is not None and why.error not in ("hook_missing", "disabled", "suspended"):
                reason = f"the gear could not start: {why.message}"
            session.rollback()
        if reason:
            self.engine.queue_failure(iid, reason)
            self.engine.flush_failures()

    def changed(self, event: EngineEvent) -> None:
        with self.engine.sessions() as session:
            workspace = self._workspace(session, event)
            if workspace is not None:
                self.engine.reread(session, workspace)
            session.rollback()

    def uninstalled(self, event: EngineEvent) -> None:
        iid = event.installation_id
        with self.engine.sessions() as session:
            workspace = self._workspace(session, event)
            if workspace is None or session.get(InstallationRow, iid) is not None:
                return
            version = session.scalar(select(GearVersion).join(Gear).where(
                Gear.name == event.gear, GearVersion.version == event.version))
            if version is None:
                return
            self.engine.forget(event.workspace, iid)
            if "gear_uninstall" in (version.manifest.get("hooks") or ()):
                self._run_uninstall(session, workspace, event)
            for table in _ENGINE_TABLES:
                session.execute(delete(table).where(table.installation_id == iid))
            session.commit()
        self.engine.runtime.forget(iid)
        self.engine.started.discard(iid)
        self.engine.remove_data(iid)

    def _run_uninstall(self, session: Session, workspace: Workspace,
                       event: EngineEvent) -> None:
        """Call ``gear_uninstall``; its failures are handled by the hook's policy
        (:func:`uninstall_settled`). A worker that cannot start is logged and the cleanup
        goes on: the installation is gone either way."""
        iid = event.installation_id
        try:
            secret_values = box_for(session).decrypt(event.secrets_encrypted)
            self.engine.start_worker(session, event.gear, event.version, iid,
                                     workspace.name, workspace.id, dict(event.config or {}),
                                     secret_values)
            pm = get_plugin_manager(self.engine.runtime.proxy(iid))
            results = pm.hook.gear_uninstall(config=None, ctx=None)
        except Exception:
            log.exception("gear_uninstall of %s (%s) could not run", event.gear, iid)
            return
        uninstall_settled(event, results)


def install_refused(results: list[GearResult | GearFailure]) -> str | None:
    """Why ``gear_install``'s results fail the installation, or ``None``, by the hook's
    policy in :data:`gears_sdk.hookspecs.HOOKS`: under ``decide`` (the table's) a failure
    marks the installation failed with the gear's message; under ``notify`` it is only
    counted and logged (by the runtime)."""
    try:
        settle("gear_install", results)
    except HookDeclined as declined:
        return f"gear_install failed: {declined.failure.error.message}"
    return None


def uninstall_settled(event: EngineEvent, results: list[GearResult | GearFailure]) -> None:
    """Handle ``gear_uninstall``'s results by the hook's policy: under ``notify`` (the
    table's) a failure is logged and the cleanup goes on; under ``decide`` it raises
    :class:`~marketplace.runtime.HookDeclined`, so the outbox row is retried after a
    backoff and the installation's engine data is kept until the gear agrees (or the row
    is dropped after its last attempt)."""
    for result in results:
        if isinstance(result, GearFailure):
            log.warning("gear_uninstall of %s (%s) failed: %s", event.gear,
                        event.installation_id, result.error)
    settle("gear_uninstall", results)
