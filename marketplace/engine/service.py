"""The engine service in this process (embedded mode): :class:`LocalEngine`.

It implements :class:`~marketplace.engine_service.EngineService` by calling the
very functions the ``/engine/v1`` views call, so an answer (or an error) is the
same whether the engine runs here or on a node (``RemoteEngine``). Each call is
one unit of work, like one API request: a session of its own, committed when
the call succeeds and rolled back when it raises, then the installations the
runtime saw fail are marked (:meth:`EngineManager.flush_failures`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.db import session_scope
from marketplace.engine import connectors, setup
from marketplace.engine.decisions import decide as run_decision
from marketplace.engine.ingest import ingest
from marketplace.engine.manager import EngineManager
from marketplace.engine.queries import (
    campaign_list,
    catalog_page,
    profile_view,
    recent_profiles,
    segment_list,
)
from marketplace.engine.validation import (
    check_decide_request,
    check_event_batch,
    check_item_batch,
    invalid,
    problem,
)
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace
from marketplace.settings import engine_version


def find_workspace(session: Session, name: str) -> Workspace:
    """The workspace called ``name``; ``404 workspace_not_found``."""
    row = session.scalar(select(Workspace).where(Workspace.name == name))
    if row is None:
        raise MarketplaceError(404, "workspace_not_found", f"there is no workspace {name!r}")
    return row


def _limit(value: int, hi: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= hi:
        raise invalid(f"'limit' must be a whole number from 1 to {hi}",
                      [problem("limit", f"from 1 to {hi}", "range")], "invalid_parameter")
    return value


class LocalEngine:
    """The engine of ``app``'s own :class:`EngineManager`, called in-process."""

    mode = "embedded"

    def __init__(self, app: Flask, manager: EngineManager,
                 on_close: Callable[[], None] | None = None) -> None:
        self.app = app
        self.manager = manager
        self._on_close = on_close or manager.shutdown

    @contextmanager
    def _unit(self, workspace: str) -> Iterator[tuple[Session, Workspace]]:
        try:
            with session_scope(self.app) as session:
                yield session, find_workspace(session, workspace)
        finally:
            self.manager.flush_failures()

    # -- events, profiles, catalog --------------------------------------------------------

    def ingest(self, workspace: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        batch = check_event_batch({"events": events})
        with self._unit(workspace) as (session, ws):
            return ingest(self.manager, session, ws, batch).to_dict()

    def profile(self, workspace: str, user_id: str) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return profile_view(session, ws, user_id)

    def recent_profiles(self, workspace: str, limit: int = 20) -> list[dict[str, Any]]:
        with self._unit(workspace) as (session, ws):
            return recent_profiles(session, ws, _limit(limit, 500))

    def import_profiles(self, workspace: str,
                        records: list[dict[str, Any]]) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return {"imported": connectors.import_profiles(session, ws.id, records)}

    def put_items(self, workspace: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = check_item_batch({"items": items})
        with self._unit(workspace) as (session, ws):
            return {"upserted": connectors.upsert_items(session, ws.id, batch)}

    def items(self, workspace: str, *, category: str | None = None,
              limit: int = 50) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return catalog_page(session, ws, category, _limit(limit, 500))

    # -- decisions --------------------------------------------------------------------------

    def decide(self, workspace: str, user_id: str, placement: str,
               context: dict[str, Any] | None = None) -> dict[str, Any]:
        user, where, ctx = check_decide_request(
            {"user_id": user_id, "placement": placement, "context": context or {}})
        with self._unit(workspace) as (session, ws):
            return run_decision(self.manager, session, ws, user, where, ctx)

    # -- segments and campaigns -------------------------------------------------------------

    def segments(self, workspace: str, *, counts: bool = False) -> list[dict[str, Any]]:
        with self._unit(workspace) as (session, ws):
            return segment_list(session, ws, counts=counts)

    def segment(self, workspace: str, name: str) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return setup.segment_json(setup.get_segment(session, ws, name))

    def put_segment(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return setup.segment_json(setup.put_segment(session, ws, name, body))

    def delete_segment(self, workspace: str, name: str) -> None:
        with self._unit(workspace) as (session, ws):
            setup.delete_segment(session, ws, name)

    def campaigns(self, workspace: str) -> list[dict[str, Any]]:
        with self._unit(workspace) as (session, ws):
            return campaign_list(session, ws)

    def campaign(self, workspace: str, name: str) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return setup.campaign_json(setup.get_campaign(session, ws, name))

    def put_campaign(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return setup.campaign_json(setup.put_campaign(session, ws, name, body))

    def delete_campaign(self, workspace: str, name: str) -> None:
        with self._unit(workspace) as (session, ws):
            setup.delete_campaign(session, ws, name)

    # -- connectors -------------------------------------------------------------------------

    def check_connection(self, workspace: str, installation: str) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return connectors.check(self.manager, session, ws, installation)

    def sync(self, workspace: str, installation: str,
             streams: list[str] | None = None) -> dict[str, Any]:
        with self._unit(workspace) as (session, ws):
            return connectors.sync(self.manager, session, ws, installation, streams=streams)

    # -- the engine itself ------------------------------------------------------------------

    def node_status(self) -> dict[str, Any]:
        return {"mode": self.mode, "engine_version": engine_version(self.app.config),
                "sandbox_level": self.manager.runtime.level}

    def close(self) -> None:
        self._on_close()
