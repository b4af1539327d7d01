"""Read-only views the API and the engine service share: profiles, the catalog, segments,
campaigns, the decision log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketplace.engine.audience import ProfileCounter, iter_members, profile_matches
from marketplace.engine.decisions import item_doc
from marketplace.engine.models import (
    Campaign,
    CatalogItem,
    Decision,
    Profile,
    Segment,
    campaign_order,
)
from marketplace.engine.profiles import profile_doc, recent_events
from marketplace.engine.setup import campaign_json, segment_json
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace

PROFILE_EVENTS = 20
#: Member counts walk every profile once per segment; above this many profiles a
#: segment list leaves them out (``members: null``) and the members endpoint pages.
COUNT_PROFILES_UP_TO = 5000


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


def recent_profiles(session: Session, workspace: Workspace, limit: int) -> list[dict[str, Any]]:
    """The profiles changed last, newest first: ``{"user_id", "updated_at"}``."""
    rows = session.execute(
        select(Profile.user_id, Profile.updated_at).where(Profile.workspace_id == workspace.id)
        .order_by(Profile.updated_at.desc(), Profile.id.desc()).limit(limit)).all()
    return [{"user_id": user, "updated_at": at.isoformat()} for user, at in rows]


def segment_list(session: Session, workspace: Workspace, *,
                 counts: bool = False) -> list[dict[str, Any]]:
    """Every segment by name; with ``counts`` each with ``members``, its member count, or
    ``None`` when the workspace has more than :data:`COUNT_PROFILES_UP_TO` profiles."""
    rows = list(session.scalars(select(Segment).where(Segment.workspace_id == workspace.id)
                                .order_by(Segment.name)))
    docs = [segment_json(r) for r in rows]
    if counts:
        total = session.scalar(select(func.count()).select_from(Profile).where(
            Profile.workspace_id == workspace.id)) or 0
        for row, doc in zip(rows, docs, strict=True):
            doc["members"] = (None if total > COUNT_PROFILES_UP_TO else
                              sum(1 for _ in iter_members(session, workspace.id, row.rule)))
    return docs


def campaign_list(session: Session, workspace: Workspace) -> list[dict[str, Any]]:
    """Every campaign in :func:`~marketplace.engine.models.campaign_order`."""
    return [campaign_json(r) for r in session.scalars(
        select(Campaign).where(Campaign.workspace_id == workspace.id)
        .order_by(*campaign_order()))]
