"""Who is in a segment: one profile (decisions) or all of them (exports, pages).

Rules are evaluated in Python over the profile documents
(:func:`marketplace.engine.segments.matches`); event conditions become
``COUNT`` queries. For a single profile each distinct condition costs one
small indexed query; for a whole workspace the profiles are walked in pages
and each page's counts come from one grouped query per condition, so an
export costs a few queries per thousand profiles rather than one per user.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import Event, Profile
from marketplace.engine.profiles import profile_doc
from marketplace.engine.segments import EventCondition, event_conditions, matches

PAGE = 1000


def _event_filter(workspace_id: int, cond: EventCondition) -> list[Any]:
    since = utcnow() - timedelta(days=cond.within_days)
    where = [Event.workspace_id == workspace_id, Event.type == cond.type,
             Event.timestamp >= since]
    if cond.name is not None:
        where.append(Event.name == cond.name)
    return where


class ProfileCounter:
    """Counts one user's events per condition, each at most once per decision."""

    def __init__(self, session: Session, workspace_id: int, user_id: str):
        self.session = session
        self.workspace_id = workspace_id
        self.user_id = user_id
        self._memo: dict[tuple[str, str | None, int], int] = {}

    def __call__(self, cond: EventCondition) -> int:
        if cond.key not in self._memo:
            self._memo[cond.key] = self.session.scalar(
                select(func.count()).select_from(Event).where(
                    *_event_filter(self.workspace_id, cond), Event.user_id == self.user_id)) or 0
        return self._memo[cond.key]


def profile_matches(session: Session, workspace_id: int, rule: dict[str, Any],
                    doc: dict[str, Any], counter: ProfileCounter | None = None) -> bool:
    """Whether the profile document ``doc`` is in the segment defined by ``rule``."""
    counter = counter or ProfileCounter(session, workspace_id, doc["user_id"])
    return matches(rule, doc, counter)


def _page_counts(session: Session, workspace_id: int, conds: list[EventCondition],
                 user_ids: list[str]) -> dict[tuple[str, str | None, int], dict[str, int]]:
    out: dict[tuple[str, str | None, int], dict[str, int]] = {}
    for cond in conds:
        if cond.key in out:
            continue
        rows = session.execute(
            select(Event.user_id, func.count()).where(
                *_event_filter(workspace_id, cond), Event.user_id.in_(user_ids))
            .group_by(Event.user_id)).all()
        out[cond.key] = {user: int(n) for user, n in rows}
    return out


def iter_members(session: Session, workspace_id: int,
                 rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The profile documents in the segment, in profile order, page by page."""
    conds = event_conditions(rule)
    last_id = 0
    while True:
        rows = session.scalars(
            select(Profile).where(Profile.workspace_id == workspace_id, Profile.id > last_id)
            .order_by(Profile.id).limit(PAGE)).all()
        if not rows:
            return
        last_id = rows[-1].id
        counts = _page_counts(session, workspace_id, conds, [r.user_id for r in rows])
        for row in rows:
            doc = profile_doc(row, row.user_id)

            def count(cond: EventCondition, user: str = row.user_id,
                      seen: dict[Any, dict[str, int]] = counts) -> int:
                return seen.get(cond.key, {}).get(user, 0)

            if matches(rule, doc, count):
                yield doc
