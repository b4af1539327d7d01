"""Decisions: what to show one user at one placement.

1. the placement's active campaign with the highest priority (equal priorities: the
   first by name; :func:`~marketplace.engine.models.campaign_order`);
2. its first experience whose segment the profile is in (no segment: everyone);
3. if the experience's content asks for items (``{"items": {"count": 4,
   "category": "shoes"}}``), a pool of catalog items is ranked by the sum of
   the scores every extension's ``gear_score_items`` gives them (ties keep
   the engine's order: newest first) and the top ones replace the request;
4. the experience's template installation renders it (``gear_render``);
   the HTML is sanitized before it leaves the engine.

Anything a gear gets wrong degrades, never fails: a scorer's failure leaves
the order to the others, a template's failure (or ``None``) shows the
campaign's static fallback. Every gear outcome goes into the response's
``gears`` and into the decision log, so a business user can see why a
visitor got the fallback.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import nh3
from sqlalchemy import select
from sqlalchemy.orm import Session

from gears_sdk.values import finite_or_none
from marketplace.engine.audience import ProfileCounter, profile_matches
from marketplace.engine.manager import EngineManager, Outcome, WorkspaceGears
from marketplace.engine.models import Campaign as CampaignRow
from marketplace.engine.models import CatalogItem, Decision, Profile, Segment, campaign_order
from marketplace.engine.profiles import profile_doc, recent_events
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace
from marketplace.runtime import GearFailure, GearResult, HookDeclined, settle
from marketplace.runtime.errors import GearCallError

#: How many catalog items are considered (and sent to scorers) per decision.
ITEM_POOL = 100
MAX_ITEMS = 50

_ATTRIBUTES = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("*", set()).update({"class", "id", "title", "lang"})
_TAGS = set(nh3.ALLOWED_TAGS) | {"section"}


def sanitize(html: str | None) -> str | None:
    """HTML safe to embed in a page: no scripts, handlers or ``javascript:`` links."""
    if html is None:
        return None
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES,
                     generic_attribute_prefixes={"data-"})


def item_doc(row: CatalogItem) -> dict[str, Any]:
    """A catalog item as gears and clients see it."""
    return {"id": row.item_id, "title": row.title, "category": row.category,
            "price": finite_or_none(row.price), "url": row.url, "image_url": row.image_url,
            "attributes": row.attributes or {}}


def _campaign(session: Session, workspace_id: int, placement: str) -> CampaignRow:
    row = session.scalar(select(CampaignRow).where(
        CampaignRow.workspace_id == workspace_id, CampaignRow.placement == placement,
        CampaignRow.active.is_(True)).order_by(*campaign_order())
        .limit(1))
    if row is None:
        raise MarketplaceError(404, "no_campaign", f"no active campaign serves the placement "
                               f"{placement!r}; create one first")
    return row


def _choose(session: Session, workspace_id: int, campaign: CampaignRow,
            doc: dict[str, Any]) -> dict[str, Any] | None:
    names = {e.get("segment") for e in campaign.experiences if e.get("segment")}
    rules = {s.name: s.rule for s in session.scalars(select(Segment).where(
        Segment.workspace_id == workspace_id, Segment.name.in_(names)))} if names else {}
    counter = ProfileCounter(session, workspace_id, doc["user_id"])
    for exp in campaign.experiences:
        seg = exp.get("segment")
        if seg is None:
            return exp
        if seg in rules and profile_matches(session, workspace_id, rules[seg], doc, counter):
            return exp
    return None


def _items(engine: EngineManager, session: Session, wg: WorkspaceGears, spec: dict[str, Any],
           doc: dict[str, Any], outcomes: list[Outcome]) -> list[dict[str, Any]]:
    count = spec.get("count", 4)
    count = max(1, min(MAX_ITEMS, count if isinstance(count, int) else 4))
    query = select(CatalogItem).where(CatalogItem.workspace_id == wg.id,
                                      CatalogItem.active.is_(True))
    if isinstance(spec.get("category"), str):
        query = query.where(CatalogItem.category == spec["category"])
    rows = session.scalars(query.order_by(CatalogItem.updated_at.desc(), CatalogItem.id.desc())
                           .limit(ITEM_POOL)).all()
    items = [item_doc(r) for r in rows]
    if not items:
        return []
    caller, failed = engine.hook(session, wg, "gear_score_items")
    outcomes.extend(failed)
    results = caller(profile=doc, items=items, config=None, ctx=None) \
        if caller.get_hookimpls() else []
    return ranked(items, results, outcomes)[:count]


def ranked(items: list[dict[str, Any]], results: list[GearResult | GearFailure],
           outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """``items`` ordered by the sum of the gears' scores (ties keep the engine's order);
    a failure is handled by ``gear_score_items``' policy: under ``decide`` the engine's
    order stands."""
    outcomes.extend(_outcome(r, "gear_score_items") for r in results)
    try:
        settled = settle("gear_score_items", results)
    except HookDeclined:
        return list(items)
    scores = dict.fromkeys((i["id"] for i in items), 0.0)
    for r in settled:
        for score in r.value or []:
            if score.item_id in scores and isinstance(score.score, (int, float)):
                scores[score.item_id] += float(score.score)
    order = {i["id"]: n for n, i in enumerate(items)}
    return sorted(items, key=lambda i: (-scores[i["id"]], order[i["id"]]))


def _outcome(r: GearResult | GearFailure, hook: str) -> Outcome:
    if isinstance(r, GearFailure):
        return Outcome(r.installation, r.gear, hook, False, r.error.code, r.error.message)
    return Outcome(r.installation, r.gear, hook, True)


def _render(engine: EngineManager, session: Session, wg: WorkspaceGears, installation: str,
            doc: dict[str, Any], content: dict[str, Any],
            outcomes: list[Outcome]) -> dict[str, Any] | None:
    caller, why = engine.hook_for(session, wg, installation, "gear_render")
    if caller is None:
        assert why is not None
        outcomes.append(why)
        return None
    results = caller(profile=doc, content=content, config=None, ctx=None)
    if not results:
        outcomes.append(Outcome(installation, "?", "gear_render", False, "not_running",
                                "the template did not answer"))
        return None
    r = results[0]
    if isinstance(r, GearResult) and r.value is None:
        outcomes.append(Outcome(r.installation, r.gear, "gear_render", False, "no_result",
                                "the template rendered nothing"))
        return None
    outcomes.append(_outcome(r, "gear_render"))
    try:
        settled = settle("gear_render", [r])
    except HookDeclined:  # the campaign's fallback
        return None
    if not settled:
        return None
    value = settled[0].value
    return {"html": sanitize(value.html), "data": value.data}


def decide(engine: EngineManager, session: Session, workspace: Workspace, user_id: str,
           placement: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision for ``user_id`` at ``placement``, logged; the caller commits.

    Raises 404 ``no_campaign`` when nothing serves the placement; a gear's
    failure never raises.
    """
    began = time.perf_counter()
    campaign = _campaign(session, workspace.id, placement)
    wg = engine.workspace(session, workspace)
    row = session.scalar(select(Profile).where(Profile.workspace_id == workspace.id,
                                               Profile.user_id == user_id))
    events = recent_events(session, workspace.id, user_id) \
        if wg.reads_events() and row is not None else [] if wg.reads_events() else None
    doc = profile_doc(row, user_id, events)
    outcomes: list[Outcome] = []
    exp = _choose(session, workspace.id, campaign, doc)
    rendered = None
    if exp is not None:
        content = copy.deepcopy(exp.get("content") or {})
        if context:
            content["context"] = context
        try:
            if isinstance(content.get("items"), dict):
                content["items"] = _items(engine, session, wg, content["items"], doc, outcomes)
            rendered = _render(engine, session, wg, exp["installation"], doc, content, outcomes)
        except GearCallError as exc:  # defensive: proxies return failures, never raise
            outcomes.append(Outcome(exc.installation, exc.gear, "?", False, exc.code, str(exc)))
    fallback = rendered is None
    if fallback:
        fb = campaign.fallback or {}
        rendered = {"html": sanitize(fb.get("html")), "data": fb.get("data")}
    took_ms = (time.perf_counter() - began) * 1000
    gears = [o.to_dict() for o in outcomes]
    experience = exp.get("name") if exp is not None and not fallback else None
    session.add(Decision(workspace_id=workspace.id, user_id=user_id, placement=placement,
                         campaign=campaign.name, experience=experience, fallback=fallback,
                         gears=gears, took_ms=round(took_ms, 3)))
    return {"campaign": campaign.name, "experience": experience, "fallback": fallback,
            "content": rendered, "gears": gears, "took_ms": round(took_ms, 3)}
