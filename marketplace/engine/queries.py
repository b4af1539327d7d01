"""Read-only views the API and the pages share: a profile, the catalog, the decision log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.engine.audience import ProfileCounter, profile_matches
from marketplace.engine.decisions import item_doc
from marketplace.engine.models import CatalogItem, Decision, Profile, Segment
from marketplace.engine.profiles import profile_doc, recent_events
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace

PROFILE_EVENTS = 20


def profile_view(session: Session, workspace: Workspace, user_id: str) -> dict[str, Any]:
    """The profile, its latest events and the segments it is in; 404 for an unknown user."""
    row = session.scalar(select(Profile).where(Profile.workspace_id == workspace.id,
                                               Profile.user_id == user_id))
    if row is None:
        raise MarketplaceError(404, "profile_not_found", f"no profile for user {user_id!r} "
                               f"in {workspace.name!r}")
    doc = profile_doc(row, user_id)
    counter = ProfileCounter(session, workspace.id, user_id)
    doc["segments"] = [s.name for s in session.scalars(
        select(Segment).where(Segment.workspace_id == workspace.id).order_by(Segment.name))
        if profile_matches(session, workspace.id, s.rule, doc, counter)]
    doc["events"] = recent_events(session, workspace.id, user_id, PROFILE_EVENTS)
    doc["created_at"] = row.created_at.isoformat()
    doc["updated_at"] = row.updated_at.isoformat()
    return doc


def catalog_page(session: Session, workspace: Workspace, category: str | None,
                 limit: int) -> dict[str, Any]:
    query = select(CatalogItem).where(CatalogItem.workspace_id == workspace.id)
    if category:
        query = query.where(CatalogItem.category == category)
    rows = session.scalars(query.order_by(CatalogItem.item_id).limit(limit))
    return {"items": [{**item_doc(r), "active": r.active} for r in rows]}


def decision_json(row: Decision) -> dict[str, Any]:
    return {"at": row.at.isoformat(), "user_id": row.user_id, "placement": row.placement,
            "campaign": row.campaign, "experience": row.experience, "fallback": row.fallback,
            "gears": row.gears, "took_ms": row.took_ms}
