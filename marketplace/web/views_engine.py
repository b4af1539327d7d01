"""A workspace's engine pages: profiles, segments, campaigns and a decision preview.

The same members-only rule as the dashboard applies (anyone else gets a 404,
so workspace names are not revealed). Pages only translate forms to calls of
the app's engine service (``services.engine(app)``, the in-process engine or
engine nodes over HTTP: the same answers and errors either way), which answers
what the JSON API answers: a profile, segments with their member counts,
campaigns in the one order decisions use, ``put_segment`` / ``put_campaign``
(every problem with its JSON path, shown next to the field it is about) and
``decide`` for the preview. A preview is a real decision: it calls the gears
and is logged like any other.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from gears_sdk.errors import ProblemDetail
from gears_sdk.values import DEFAULT_LIMITS, ValueRejected
from gears_sdk.values import parse_json as parse_checked
from marketplace import services
from marketplace.db import get_session
from marketplace.engine_service import NAME_RULE, OPERATORS, EngineService
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace
from marketplace.web.session import login_required
from marketplace.web.views_workspace import workspace_or_404
from marketplace.workspaces import list_installations

bp = Blueprint("web_engine", __name__)

#: The engine counts segment members for workspaces with at most this many profiles
#: (``members: null`` above it); the page says so.
COUNT_PROFILES_UP_TO = 5000
MAX_USER_ID = 200
RECENT_PROFILES = 12

#: What a textarea of the engine pages may hold (rules, experiences, data, context).
FORM_LIMITS = DEFAULT_LIMITS.with_(max_bytes=256 * 1024)

#: Examples for the forms' help, laid out to read well in a narrow column.
EXAMPLE_RULE = """\
{"and": [
  {"field": "traits.rfm.segment",
   "op": "in", "value": ["champion", "loyal"]},
  {"not": {"field": "attributes.country",
           "op": "==", "value": "FR"}},
  {"event": "purchase",
   "at_least": 2, "within_days": 30}
]}"""
EXAMPLE_EXPERIENCES = """\
[
  {"name": "welcome-back",
   "segment": "buyers",
   "installation": "<installation id>",
   "content": {"headline": "Hi {first_name}!"}},
  {"name": "everyone-else",
   "segment": null,
   "installation": "<installation id>",
   "content": {}}
]"""


def engine() -> EngineService:
    return services.engine(current_app)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def parse_json(text: str, path: str, problems: list[ProblemDetail], *, default: Any = None) -> Any:
    """The JSON in a textarea under the one input contract (``gears_sdk.values``), or a
    problem at ``path`` saying where it stops being JSON or which value breaks it."""
    if not text.strip():
        return default
    try:
        return parse_checked(text, FORM_LIMITS)
    except ValueRejected as exc:
        if exc.code != "invalid_json":
            problems.append({"path": path + exc.path[1:], "message": exc.message,
                             "code": exc.code})
            return default
    where, reason = "", "it is malformed"
    try:  # only for the line and column: the depth is known to be bounded here
        json.loads(text)
    except ValueError as err:
        line, col = getattr(err, "lineno", None), getattr(err, "colno", None)
        where = f" (line {line}, column {col})" if line else ""
        reason = getattr(err, "msg", str(err))
    problems.append({"path": path, "message": f"is not valid JSON: {reason}{where}",
                     "code": "form.json"})
    return default


def field_errors(problems: list[ProblemDetail], fields: dict[str, str]) -> dict[str, list[str]]:
    """Problems grouped by form field: ``fields`` maps a JSON path prefix to a field name.

    The longest matching prefix wins; a problem below the field's own path keeps its
    path in the message (``$.rule.and[2].op: one of ...``) so the user can find it."""
    out: dict[str, list[str]] = {}
    for p in problems:
        path = p.get("path") or "$"
        best = max((prefix for prefix in fields
                    if path == prefix or path.startswith((prefix + ".", prefix + "["))),
                   key=len, default="$")
        name = fields.get(best, "form")
        message = p.get("message", "is not valid")
        if path != best:
            message = f"{path}: {message}"
        out.setdefault(name, []).append(message)
    return out


def _exists(get: Any) -> bool:
    """Whether ``get()`` finds its object (a 404 says it does not)."""
    try:
        get()
    except MarketplaceError as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- profiles -----------------------------------------------------------------------------


@bp.get("/workspaces/<ws>/profiles")
@login_required
def profiles(ws: str) -> str:
    """Look a profile up by user id: attributes, traits, segments and latest events."""
    workspace = workspace_or_404(ws)
    user_id = (request.args.get("user_id") or "").strip()
    profile, missing, problem = None, False, None
    if len(user_id) > MAX_USER_ID:
        problem = f"A user id has at most {MAX_USER_ID} characters."
    elif user_id:
        try:
            profile = engine().profile(workspace.name, user_id)
        except MarketplaceError as exc:
            if exc.status != 404:
                raise
            missing = True
    recent = [] if profile else [
        p["user_id"] for p in engine().recent_profiles(workspace.name, RECENT_PROFILES)]
    if profile is not None:
        profile["events"] = list(reversed(profile["events"]))
    status = 404 if missing else 200
    return render_template("engine/profiles.html", ws=workspace, user_id=user_id,
                           profile=profile, missing=missing, problem=problem,
                           recent=recent), status  # type: ignore[return-value]


# -- segments -----------------------------------------------------------------------------


@bp.get("/workspaces/<ws>/segments")
@login_required
def segments(ws: str) -> str:
    workspace = workspace_or_404(ws)
    rows = engine().segments(workspace.name, counts=True)
    used: dict[str, list[str]] = {}
    for c in engine().campaigns(workspace.name):
        for exp in c.get("experiences") or []:
            if exp.get("segment"):
                used.setdefault(exp["segment"], [])
                if c["name"] not in used[exp["segment"]]:
                    used[exp["segment"]].append(c["name"])
    counts = None if any(r.get("members") is None for r in rows) else \
        {r["name"]: r["members"] for r in rows}
    return render_template("engine/segments.html", ws=workspace, segments=rows,
                           counts=counts, used=used, limit=COUNT_PROFILES_UP_TO)


def _segment_form(workspace: Workspace, *, name: str, title: str, rule_text: str, new: bool,
                  errors: dict[str, list[str]] | None = None, status: int = 200) -> Any:
    return render_template("engine/segment_form.html", ws=workspace, name=name, title=title,
                           rule_text=rule_text, new=new, errors=errors or {},
                           operators=OPERATORS, example=EXAMPLE_RULE,
                           name_rule=NAME_RULE), status


def _save_segment(workspace: Workspace, name: str, new: bool) -> Any:
    title = request.form.get("title", "").strip()
    rule_text = request.form.get("rule", "")
    problems: list[ProblemDetail] = []
    rule = parse_json(rule_text, "$.rule", problems)
    if rule is None and not problems:
        problems.append({"path": "$.rule", "message": "a segment needs a rule",
                         "code": "required"})
    if new and name and _exists(lambda: engine().segment(workspace.name, name)):
        problems.append({"path": "$.name", "message": "a segment with this name exists already",
                         "code": "exists"})
    if not problems:
        try:
            engine().put_segment(workspace.name, name, {"title": title, "rule": rule})
        except MarketplaceError as exc:
            if exc.status >= 500:
                raise
            problems = list(exc.details) or [{"path": "$", "message": exc.message,
                                              "code": exc.code}]
    if problems:
        errors = field_errors(problems, {"$.name": "name", "$.title": "title", "$.rule": "rule"})
        return _segment_form(workspace, name=name, title=title, rule_text=rule_text, new=new,
                             errors=errors, status=422)
    flash(f"The segment {name} is saved.", "success")
    return redirect(url_for("web_engine.segments", ws=workspace.name))


@bp.route("/workspaces/<ws>/segments/new", methods=["GET", "POST"])
@login_required
def new_segment(ws: str) -> Any:
    workspace = workspace_or_404(ws)
    if request.method == "POST":
        return _save_segment(workspace, request.form.get("name", "").strip(), new=True)
    return _segment_form(workspace, name="", title="", new=True,
                         rule_text=pretty({"event": "purchase", "at_least": 1,
                                           "within_days": 30}))


@bp.route("/workspaces/<ws>/segments/<name>", methods=["GET", "POST"])
@login_required
def edit_segment(ws: str, name: str) -> Any:
    workspace = workspace_or_404(ws)
    row = _or_404(lambda: engine().segment(workspace.name, name))
    if request.method == "POST":
        return _save_segment(workspace, row["name"], new=False)
    return _segment_form(workspace, name=row["name"], title=row.get("title") or "",
                         rule_text=pretty(row["rule"]), new=False)


@bp.route("/workspaces/<ws>/segments/<name>/delete", methods=["GET", "POST"])
@login_required
def delete_segment(ws: str, name: str) -> Any:
    workspace = workspace_or_404(ws)
    row = _or_404(lambda: engine().segment(workspace.name, name))
    return _delete(workspace, "segment", row, engine().delete_segment)


def _delete(workspace: Workspace, kind: str, row: dict[str, Any],
            delete: Any) -> Any:
    """The confirmation page (GET), or the deletion (POST, with the form's CSRF token)."""
    ws, name = workspace.name, row["name"]
    edit = url_for(f"web_engine.edit_{kind}", ws=ws, name=name)
    if request.method == "GET":
        return render_template("engine/delete.html", ws=workspace, kind=kind, name=name,
                               title=row.get("title"), back=edit)
    try:
        delete(ws, name)
    except MarketplaceError as exc:
        if exc.status >= 500:
            raise
        flash(exc.message, "error")
        return redirect(edit)
    flash(f"The {kind} {name} was deleted.", "success")
    return redirect(url_for(f"web_engine.{kind}s", ws=ws))


def _or_404(get: Any) -> Any:
    from flask import abort

    try:
        return get()
    except MarketplaceError as exc:
        if exc.status == 404:
            abort(404, exc.message)
        raise


# -- campaigns ----------------------------------------------------------------------------


def _templates(workspace: Workspace) -> list[dict[str, str]]:
    return [{"id": i.id, "title": i.gear.title, "gear": i.gear.name,
             "enabled": "yes" if i.enabled else "no"}
            for i in list_installations(get_session(), workspace) if i.gear.kind == "template"]


@bp.get("/workspaces/<ws>/campaigns")
@login_required
def campaigns(ws: str) -> str:
    workspace = workspace_or_404(ws)
    return render_template("engine/campaigns.html", ws=workspace,
                           campaigns=engine().campaigns(workspace.name))


def _campaign_form(workspace: Workspace, values: dict[str, Any], *, new: bool,
                   errors: dict[str, list[str]] | None = None, status: int = 200) -> Any:
    return render_template("engine/campaign_form.html", ws=workspace, v=values, new=new,
                           errors=errors or {}, templates=_templates(workspace),
                           segment_names=[s["name"] for s in engine().segments(workspace.name)],
                           example=EXAMPLE_EXPERIENCES, name_rule=NAME_RULE), status


def _campaign_values(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"name": "", "title": "", "placement": "", "priority": "0", "active": True,
                "experiences": "[]", "fallback_html": "", "fallback_data": ""}
    fb = row.get("fallback") or {}
    return {"name": row["name"], "title": row.get("title") or "",
            "placement": row["placement"], "priority": str(row.get("priority", 0)),
            "active": row.get("active", True), "experiences": pretty(row.get("experiences") or []),
            "fallback_html": fb.get("html") or "",
            "fallback_data": pretty(fb["data"]) if fb.get("data") is not None else ""}


def _save_campaign(workspace: Workspace, name: str, new: bool) -> Any:
    form = request.form
    texts = {"name": name, "title": form.get("title", "").strip(),
             "placement": form.get("placement", "").strip(),
             "priority": form.get("priority", "0").strip(),
             "experiences": form.get("experiences", ""),
             "fallback_html": form.get("fallback_html", ""),
             "fallback_data": form.get("fallback_data", "")}
    values: dict[str, Any] = {**texts, "active": bool(form.get("active"))}
    problems: list[ProblemDetail] = []
    try:
        priority = int(texts["priority"] or "0")
    except ValueError:
        priority = 0
        problems.append({"path": "$.priority", "message": "must be a whole number (higher wins)",
                         "code": "form.number"})
    experiences = parse_json(texts["experiences"], "$.experiences", problems, default=[])
    data = parse_json(texts["fallback_data"], "$.fallback.data", problems)
    if new and name and _exists(lambda: engine().campaign(workspace.name, name)):
        problems.append({"path": "$.name", "message": "a campaign with this name exists already",
                         "code": "exists"})
    body = {"title": values["title"], "placement": values["placement"], "priority": priority,
            "active": values["active"], "experiences": experiences,
            "fallback": {"html": values["fallback_html"] or None, "data": data}}
    if not problems:
        try:
            engine().put_campaign(workspace.name, name, body)
        except MarketplaceError as exc:
            if exc.status >= 500:
                raise
            problems = list(exc.details) or [{"path": "$", "message": exc.message,
                                              "code": exc.code}]
    if problems:
        errors = field_errors(problems, {
            "$.name": "name", "$.title": "title", "$.placement": "placement",
            "$.priority": "priority", "$.active": "active", "$.experiences": "experiences",
            "$.fallback": "fallback_html", "$.fallback.html": "fallback_html",
            "$.fallback.data": "fallback_data"})
        return _campaign_form(workspace, values, new=new, errors=errors, status=422)
    flash(f"The campaign {name} is saved.", "success")
    return redirect(url_for("web_engine.campaigns", ws=workspace.name))


@bp.route("/workspaces/<ws>/campaigns/new", methods=["GET", "POST"])
@login_required
def new_campaign(ws: str) -> Any:
    workspace = workspace_or_404(ws)
    if request.method == "POST":
        return _save_campaign(workspace, request.form.get("name", "").strip(), new=True)
    return _campaign_form(workspace, _campaign_values(None), new=True)


@bp.route("/workspaces/<ws>/campaigns/<name>", methods=["GET", "POST"])
@login_required
def edit_campaign(ws: str, name: str) -> Any:
    workspace = workspace_or_404(ws)
    row = _or_404(lambda: engine().campaign(workspace.name, name))
    if request.method == "POST":
        return _save_campaign(workspace, row["name"], new=False)
    return _campaign_form(workspace, _campaign_values(row), new=False)


@bp.route("/workspaces/<ws>/campaigns/<name>/delete", methods=["GET", "POST"])
@login_required
def delete_campaign(ws: str, name: str) -> Any:
    workspace = workspace_or_404(ws)
    row = _or_404(lambda: engine().campaign(workspace.name, name))
    return _delete(workspace, "campaign", row, engine().delete_campaign)


# -- decision preview ---------------------------------------------------------------------


def preview_document(html: str | None) -> str:
    """The ``srcdoc`` of the sandboxed preview frame: the engine's (sanitized) HTML."""
    css = url_for("static", filename="preview.css")
    return ('<!doctype html><html><head><meta charset="utf-8">'
            f'<link rel="stylesheet" href="{css}"></head>'
            f"<body>{html or ''}</body></html>")


@bp.route("/workspaces/<ws>/preview", methods=["GET", "POST"])
@login_required
def preview(ws: str) -> Any:
    """Run the real decision for a user at a placement and show what it chose and why."""
    workspace = workspace_or_404(ws)
    placements = sorted({c["placement"] for c in engine().campaigns(workspace.name)})
    form = request.form if request.method == "POST" else request.args
    values = {"placement": (form.get("placement") or (placements[0] if placements else "")
                            ).strip(),
              "user_id": (form.get("user_id") or "").strip(),
              "context": form.get("context") or ""}
    errors: dict[str, list[str]] = {}
    result = None
    if request.method == "POST":
        problems: list[ProblemDetail] = []
        if not values["user_id"] or len(values["user_id"]) > MAX_USER_ID:
            problems.append({"path": "$.user_id", "message": "a user id of 1 to "
                             f"{MAX_USER_ID} characters", "code": "invalid"})
        if not values["placement"]:
            problems.append({"path": "$.placement", "message": "choose a placement",
                             "code": "required"})
        context = parse_json(values["context"], "$.context", problems, default={})
        if not isinstance(context, dict):
            problems.append({"path": "$.context", "message": "must be a JSON object",
                             "code": "invalid"})
        if not problems:
            try:
                result = engine().decide(workspace.name, values["user_id"],
                                         values["placement"], context)
            except MarketplaceError as exc:
                if exc.status >= 500:
                    raise
                problems.append({"path": "$.placement", "message": exc.message,
                                 "code": exc.code})
        errors = field_errors(problems, {"$.user_id": "user_id", "$.placement": "placement",
                                         "$.context": "context"})
    if result is not None:
        content = result.get("content") or {}
        result["srcdoc"] = preview_document(content.get("html"))
        result["data_json"] = pretty(content.get("data")) if content.get("data") is not None \
            else None
        result["profile_exists"] = _exists(
            lambda: engine().profile(workspace.name, values["user_id"]))
    status = 422 if errors else 200
    return render_template("engine/preview.html", ws=workspace, placements=placements,
                           v=values, errors=errors, result=result), status
