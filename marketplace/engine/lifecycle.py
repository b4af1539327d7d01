"""The engine's answers to installation changes (the ``marketplace.workspaces`` signals).

* installed: run ``gear_install`` when the gear declares it; if it fails the
  installation is marked failed with the gear's message, so the user sees
  why (the install itself is already committed when the signal arrives);
* upgraded, config changed, enabled or disabled: stop the worker; the next
  use starts the right version with the right config, or nothing;
* uninstalled: run ``gear_uninstall`` (failures are logged and do not stop
  anything), stop the worker, delete the installation's state, cursors,
  schedule and sync history, and its data directory.

Signals are process-wide while apps are not, so each receiver first checks
that the installation belongs to its app's database.
"""

from __future__ import annotations

import logging
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
from marketplace.runtime import GearFailure
from marketplace.workspaces import events
from marketplace.workspaces.events import InstallationEvent
from marketplace.workspaces.models import Installation as InstallationRow

log = logging.getLogger(__name__)

_ENGINE_TABLES: tuple[Any, ...] = (InstallationState, ConnectorCursor, SyncSchedule, SyncRun)


class Lifecycle:
    """Connects one :class:`EngineManager` to the installation signals."""

    def __init__(self, engine: EngineManager):
        self.engine = engine
        self._receivers = {
            events.on_installed: self.installed,
            events.on_upgraded: self.changed,
            events.on_config_changed: self.changed,
            events.on_enabled_changed: self.changed,
            events.on_uninstalled: self.uninstalled,
        }

    def connect(self) -> None:
        for signal, receiver in self._receivers.items():
            signal.connect(receiver)

    def disconnect(self) -> None:
        for signal, receiver in self._receivers.items():
            signal.disconnect(receiver)

    def _workspace(self, session: Session, event: InstallationEvent) -> Workspace | None:
        return session.scalar(select(Workspace).where(Workspace.name == event.workspace))

    def installed(self, event: InstallationEvent) -> None:
        with self.engine.sessions() as session:
            row = session.get(InstallationRow, event.id)
            workspace = self._workspace(session, event)
            if row is None or workspace is None or row.workspace_id != workspace.id:
                return  # another app's installation
            self.engine.forget(event.workspace, event.id)
            wg = self.engine.workspace(session, workspace)
            caller, why = self.engine.hook_for(session, wg, event.id, "gear_install")
            reason = None
            if caller is not None:
                results = caller(config=None, ctx=None)
                if results and isinstance(results[0], GearFailure):
                    reason = f"gear_install failed: {results[0].error.message}"
            elif why is not None and why.error not in ("hook_missing", "disabled"):
                reason = f"the gear could not start: {why.message}"
            session.rollback()
        if reason:
            self.engine.queue_failure(event.id, reason)
            self.engine.flush_failures()

    def changed(self, event: InstallationEvent) -> None:
        self.engine.forget(event.workspace, event.id)

    def uninstalled(self, event: InstallationEvent) -> None:
        with self.engine.sessions() as session:
            workspace = self._workspace(session, event)
            if workspace is None or session.get(InstallationRow, event.id) is not None:
                return
            version = session.scalar(select(GearVersion).join(Gear).where(
                Gear.name == event.gear, GearVersion.version == event.version))
            if version is None:
                return
            self.engine.forget(event.workspace, event.id)
            if "gear_uninstall" in (version.manifest.get("hooks") or ()):
                self._run_uninstall(session, workspace, event)
            for table in _ENGINE_TABLES:
                session.execute(delete(table).where(table.installation_id == event.id))
            session.commit()
        self.engine.runtime.forget(event.id)
        self.engine.started.discard(event.id)
        self.engine.remove_data(event.id)

    def _run_uninstall(self, session: Session, workspace: Workspace,
                       event: InstallationEvent) -> None:
        try:
            self.engine.start_worker(session, event.gear, event.version, event.id,
                                     workspace.name, workspace.id, dict(event.config),
                                     dict(event.secrets))
            pm = get_plugin_manager(self.engine.runtime.proxy(event.id))
            for result in pm.hook.gear_uninstall(config=None, ctx=None):
                if isinstance(result, GearFailure):
                    log.warning("gear_uninstall of %s (%s) failed: %s", event.gear, event.id,
                                result.error)
        except Exception:
            log.exception("gear_uninstall of %s (%s) could not run", event.gear, event.id)
