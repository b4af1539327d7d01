"""Segments and campaigns: saving them (validated, every problem with its path) and showing them.

A campaign is checked against the workspace when it is saved: its segments
must exist and each experience's installation must be a template installed
in the same workspace. Decisions then never meet a dangling reference except
one made later (a segment deleted, a gear uninstalled), and those degrade to
the next experience or the fallback.

Two requests creating the same name at once cannot both win: the database's
unique constraint decides, and the loser gets 409 ``conflict`` with the
winner's state (``current``) instead of a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import Campaign, Segment
from marketplace.engine.segments import validate_rule
from marketplace.engine.validation import ProblemDetail, check_name, invalid, problem
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, Workspace
from marketplace.workspaces.models import Installation as InstallationRow

MAX_EXPERIENCES = 20
MAX_PRIORITY = 1_000_000


def _title(body: dict[str, Any], problems: list[ProblemDetail]) -> str:
    title = body.get("title", "")
    if not isinstance(title, str) or len(title) > 200:
        problems.append(problem("$.title", "a string of at most 200 characters"))
        return ""
    return title


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("send a JSON object", [problem("$", "a JSON object")])
    return body


def get_segment(session: Session, workspace: Workspace, name: str) -> Segment:
    row = session.scalar(select(Segment).where(Segment.workspace_id == workspace.id,
                                               Segment.name == name))
    if row is None:
        raise MarketplaceError(404, "segment_not_found", f"no segment {name!r} in "
                               f"{workspace.name!r}")
    return row


def put_segment(session: Session, workspace: Workspace, name: str, body: Any) -> Segment:
    """Create or replace the segment ``name``; 422 listing every problem. The caller commits."""
    body = _body(body)
    problems: list[ProblemDetail] = []
    check_name(name, "$.name", problems)
    title = _title(body, problems)
    for key in sorted(set(body) - {"name", "title", "rule"}):
        problems.append(problem(f"$.{key}", f"unknown field {key!r}"))
    if "rule" not in body:
        problems.append(problem("$.rule", "a segment needs a rule"))
    else:
        problems += validate_rule(body["rule"])
    if problems:
        raise invalid(f"the segment has {len(problems)} problem(s)", problems, "invalid_segment")
    row = session.scalar(select(Segment).where(Segment.workspace_id == workspace.id,
                                               Segment.name == name))
    if row is None:
        row = Segment(workspace_id=workspace.id, name=name, created_at=utcnow())
        session.add(row)
    row.title, row.rule, row.updated_at = title, body["rule"], utcnow()
    _flush_or_conflict(session, lambda: segment_json(get_segment(session, workspace, name)),
                       f"the segment {name!r} was just created by another request")
    return row


def _flush_or_conflict(session: Session, current: Callable[[], dict[str, Any]],
                       message: str) -> None:
    """Flush; when a concurrent request created the same name first, 409 ``conflict``
    carrying the winner's state as ``current`` (the caller's changes are rolled back)."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise MarketplaceError(409, "conflict", message + "; it now holds what is shown as "
                               "'current': read it and send your change again",
                               current=current()) from None


def delete_segment(session: Session, workspace: Workspace, name: str) -> None:
    """Delete a segment no campaign uses; 409 ``segment_in_use`` otherwise."""
    row = get_segment(session, workspace, name)
    users = [c.name for c in session.scalars(select(Campaign).where(
        Campaign.workspace_id == workspace.id))
        if any(e.get("segment") == name for e in c.experiences or [])]
    if users:
        raise MarketplaceError(409, "segment_in_use", f"the segment {name!r} is used by the "
                               f"campaign(s) {', '.join(users)}; change them first")
    session.delete(row)


def segment_json(row: Segment) -> dict[str, Any]:
    return {"name": row.name, "title": row.title, "rule": row.rule,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


# -- campaigns ----------------------------------------------------------------------------


def get_campaign(session: Session, workspace: Workspace, name: str) -> Campaign:
    row = session.scalar(select(Campaign).where(Campaign.workspace_id == workspace.id,
                                                Campaign.name == name))
    if row is None:
        raise MarketplaceError(404, "campaign_not_found", f"no campaign {name!r} in "
                               f"{workspace.name!r}")
    return row


def _templates(session: Session, workspace: Workspace) -> dict[str, str]:
    """``{installation id: gear kind}`` for the workspace."""
    rows = session.execute(select(InstallationRow.id, Gear.kind).join(
        Gear, InstallationRow.gear_id == Gear.id).where(
        InstallationRow.workspace_id == workspace.id)).all()
    return {iid: kind for iid, kind in rows}


def _experiences(session: Session, workspace: Workspace, raw: Any,
                 problems: list[ProblemDetail]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EXPERIENCES:
        problems.append(problem("$.experiences", f"a list of 1 to {MAX_EXPERIENCES} "
                                "experiences"))
        return []
    kinds = _templates(session, workspace)
    segments = set(session.scalars(select(Segment.name).where(
        Segment.workspace_id == workspace.id)))
    out, names = [], set()
    for i, exp in enumerate(raw):
        path = f"$.experiences[{i}]"
        if not isinstance(exp, dict):
            problems.append(problem(path, "an experience is an object"))
            continue
        for key in sorted(set(exp) - {"name", "segment", "installation", "content"}):
            problems.append(problem(f"{path}.{key}", f"unknown field {key!r}"))
        # References are strings before they are looked up: a list or an object is
        # refused with its path, never hashed into a 500.
        name = exp.get("name")
        check_name(name, f"{path}.name", problems)
        if isinstance(name, str) and name in names:
            problems.append(problem(f"{path}.name", "two experiences have this name"))
        names.add(name if isinstance(name, str) else "")
        seg = exp.get("segment")
        if seg is not None and (not isinstance(seg, str) or seg not in segments):
            problems.append(problem(f"{path}.segment", f"no segment {seg!r} in this workspace "
                                    "(null means everyone)"))
        inst = exp.get("installation")
        if not isinstance(inst, str):
            problems.append(problem(f"{path}.installation", "the id (a string) of a template "
                                    "installed in this workspace"))
        elif kinds.get(inst) != "template":
            problems.append(problem(f"{path}.installation",
                                    "the id of a template installed in this workspace"
                                    if inst not in kinds else "this installation is not a "
                                    "template"))
        if not isinstance(exp.get("content", {}), dict):
            problems.append(problem(f"{path}.content", "an object"))
        out.append({"name": exp.get("name"), "segment": seg, "installation": inst,
                    "content": exp.get("content") or {}})
    return out


def _fallback(raw: Any, problems: list[ProblemDetail]) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) - {"html", "data"}:
        problems.append(problem("$.fallback", "an object with 'html' (string) and/or 'data' "
                                "(object)"))
        return {}
    if not isinstance(raw.get("html", ""), (str, type(None))):
        problems.append(problem("$.fallback.html", "a string"))
    if not isinstance(raw.get("data", {}), (dict, type(None))):
        problems.append(problem("$.fallback.data", "an object"))
    return {"html": raw.get("html"), "data": raw.get("data")}


def put_campaign(session: Session, workspace: Workspace, name: str, body: Any) -> Campaign:
    """Create or replace the campaign ``name``; 422 listing every problem. The caller commits."""
    body = _body(body)
    problems: list[ProblemDetail] = []
    check_name(name, "$.name", problems)
    title = _title(body, problems)
    allowed = {"name", "title", "placement", "priority", "active", "experiences", "fallback"}
    for key in sorted(set(body) - allowed):
        problems.append(problem(f"$.{key}", f"unknown field {key!r}"))
    check_name(body.get("placement"), "$.placement", problems)
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) \
            or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        problems.append(problem("$.priority", f"a whole number from -{MAX_PRIORITY} to "
                                f"{MAX_PRIORITY} (higher wins)"))
    active = body.get("active", True)
    if not isinstance(active, bool):
        problems.append(problem("$.active", "true or false"))
    experiences = _experiences(session, workspace, body.get("experiences"), problems)
    fallback = _fallback(body.get("fallback", {}), problems)
    if problems:
        raise invalid(f"the campaign has {len(problems)} problem(s)", problems,
                      "invalid_campaign")
    row = session.scalar(select(Campaign).where(Campaign.workspace_id == workspace.id,
                                                Campaign.name == name))
    if row is None:
        row = Campaign(workspace_id=workspace.id, name=name, created_at=utcnow())
        session.add(row)
    row.title, row.placement, row.priority, row.active = title, body["placement"], priority, active
    row.experiences, row.fallback, row.updated_at = experiences, fallback, utcnow()
    _flush_or_conflict(session, lambda: campaign_json(get_campaign(session, workspace, name)),
                       f"the campaign {name!r} was just created by another request")
    return row


def delete_campaign(session: Session, workspace: Workspace, name: str) -> None:
    """Delete a campaign; its placement stops serving it at once. The caller commits."""
    session.delete(get_campaign(session, workspace, name))


def campaign_json(row: Campaign) -> dict[str, Any]:
    return {"name": row.name, "title": row.title, "placement": row.placement,
            "priority": row.priority, "active": row.active, "experiences": row.experiences,
            "fallback": row.fallback, "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat()}
