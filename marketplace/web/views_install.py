"""Installing, reconfiguring and upgrading a gear from the web pages.

Install is three steps, each a plain form post: pick a version and fill in the
settings form generated from its ``config_schema`` → the server validates it
against the schema and shows every problem next to its field, keeping what was
typed → a consent screen lists what the gear may do, in plain words → the
installation is created and the dashboard says so. The validated config rides
from step two to three encrypted (:mod:`.pending`), never echoed into the page.

An upgrade (or a downgrade to an earlier version) shows what the target
version may do that the installed one may not, and asks for consent again
only when that list grows.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from gears_sdk.errors import ProblemDetail
from gears_sdk.versions import Version
from marketplace import workspaces as service
from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, Workspace
from marketplace.registry import queries
from marketplace.settings import engine_version
from marketplace.web import pending
from marketplace.web.formparse import attach_errors, parse_form
from marketplace.web.forms import build_form, to_raw
from marketplace.web.session import current_user, login_required
from marketplace.web.views_workspace import (
    base_url,
    dashboard_url,
    installation_or_404,
    workspace_or_404,
)
from marketplace.workspaces.planning import engine_mismatch
from marketplace.workspaces.validation import config_schema_of, validate_config

bp = Blueprint("web_install", __name__)



def _gear_or_404(publisher: str, name: str) -> Gear:
    gear = queries.get_gear(get_session(), publisher, name)
    if gear is None or queries.latest_public(gear) is None:
        abort(404, f"there is no installable gear called {publisher}/{name}")
    return gear


def _installable(gear: Gear) -> list[GearVersion]:
    return [v for v in queries.sorted_versions(gear.versions) if queries.is_public(v)]


def _existing(ws: Workspace, gear: Gear) -> Any:
    return next((i for i in service.list_installations(get_session(), ws)
                 if i.gear_id == gear.id), None)


def _config_problems(problems: list[dict[str, Any]]) -> list[ProblemDetail]:
    """The service reports config paths under ``$.config``; the form's root is ``$``."""
    out = []
    for p in problems:
        path = str(p.get("path") or "$")
        if path.startswith("$.config"):
            path = "$" + path[len("$.config"):]
        out.append({"path": path, "message": str(p.get("message", "")),
                    "code": str(p.get("code", ""))})
    return out


def _merge(parse_problems: list[ProblemDetail], schema_problems: list[ProblemDetail]) -> list[ProblemDetail]:
    """Unreadable input wins over what the schema says about its (missing) value."""
    seen = {p["path"] for p in parse_problems}
    return parse_problems + [p for p in schema_problems if p["path"] not in seen]


@bp.get("/gears/<publisher>/<name>/install")
@login_required
def install_choose(publisher: str, name: str) -> Response:
    """The gear page's Install button: on to the chosen workspace's install form."""
    ws = workspace_or_404(request.args.get("ws", ""))
    return redirect(url_for("web_install.install_start", ws=ws.name, publisher=publisher,
                            name=name, version=request.args.get("version") or None))


def _render_form(ws: Workspace, gear: Gear, version: GearVersion, raw: Any,
                 problems: list[ProblemDetail], status: int = 200) -> tuple[str, int]:
    schema = config_schema_of(version.manifest)
    fields = build_form(schema, raw)
    general = attach_errors(fields, problems)
    plan_error = None
    try:
        plan = service.plan_install(get_session(), ws, gear.name, version.version)
    except MarketplaceError as exc:
        plan, plan_error = None, exc
    return render_template("install/configure.html", ws=ws, gear=gear, version=version,
                           versions=_installable(gear), fields=fields, general=general,
                           plan=plan, plan_error=plan_error,
                           error_count=len(problems)), status


@bp.route("/workspaces/<ws>/install/<publisher>/<name>", methods=["GET", "POST"])
@login_required
def install_start(ws: str, publisher: str, name: str) -> Response | tuple[str, int]:
    """Steps one and two: the version and settings form, then the consent screen."""
    workspace = workspace_or_404(ws)
    gear = _gear_or_404(publisher, name)
    existing = _existing(workspace, gear)
    if existing is not None:
        flash(f"{gear.title} is already installed here; you can upgrade or reconfigure it.",
              "info")
        return redirect(url_for("web_workspace.installation", ws=ws, installation_id=existing.id))
    versions = _installable(gear)
    engine = engine_version()
    # by default the newest version that runs on this engine (any other is refused)
    wanted = request.values.get("version") or next(
        (v.version for v in versions if engine_mismatch(v.manifest, engine) is None),
        versions[0].version if versions else "")
    version = next((v for v in versions if v.version == wanted), None)
    if version is None:
        abort(404, f"{gear.name} has no installable version {wanted}")
    schema = config_schema_of(version.manifest)
    if request.method == "GET":
        return _render_form(workspace, gear, version, to_raw(schema, None), [])
    if request.form.get("step") == "consent":
        return _finish_install(workspace, gear, version)

    config, parse_problems = parse_form(schema, request.form)
    _, _, schema_problems = validate_config(version.manifest, config)
    problems = _merge(parse_problems, schema_problems)
    if problems:
        return _render_form(workspace, gear, version, request.form, problems, 422)
    try:
        plan = service.plan_install(get_session(), workspace, gear.name, version.version)
    except MarketplaceError as exc:
        flash(exc.message, "error")
        return _render_form(workspace, gear, version, request.form, [], 409)
    user = current_user()
    assert user is not None
    token = pending.seal(user_id=user.id, workspace=workspace.name, gear=gear.name,
                         version=version.version, config=config)
    return render_template("install/consent.html", ws=workspace, gear=gear, version=version,
                           plan=plan, pending=token, error=None), 200


def _finish_install(ws: Workspace, gear: Gear, version: GearVersion) -> Response | tuple[str, int]:
    """Step three: install with the config from step two and the consent just given."""
    user = current_user()
    assert user is not None
    token = request.form.get("pending") or ""
    version_str, config = pending.unseal(token, user_id=user.id, workspace=ws.name,
                                         gear=gear.name)
    consent: list[str] | bool = (request.form.getlist("capability")
                                 if request.form.get("consent") == "yes" else False)
    try:
        inst = service.install(get_session(), ws, gear.name, version_spec=version_str,
                               config=config, consent=consent, actor=user)
    except MarketplaceError as exc:
        if exc.code == "invalid_config":
            return _render_form(ws, gear, version, to_raw(config_schema_of(version.manifest),
                                                          config),
                                _config_problems(exc.details), 422)
        if exc.code == "consent_required":
            plan = service.plan_install(get_session(), ws, gear.name, version_str)
            return render_template("install/consent.html", ws=ws, gear=gear, version=version,
                                   plan=plan, pending=token,
                                   error="Tick the box to allow these permissions, or cancel."
                                   ), 422
        flash(exc.message, "error")
        return redirect(url_for("web_install.install_start", ws=ws.name,
                                publisher=gear.name.split("/")[0],
                                name=gear.name.split("/")[1], version=version_str))
    flash(f"{gear.title} {inst.version} is installed in {ws.display_name or ws.name}.",
          "success")
    return redirect(dashboard_url(ws))


@bp.route("/workspaces/<ws>/installations/<installation_id>/configure",
          methods=["GET", "POST"])
@login_required
def configure(ws: str, installation_id: str) -> Response | tuple[str, int]:
    """Change an installation's settings; secrets left blank keep their stored value."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    version = next(v for v in inst.gear.versions if v.version == inst.version)
    schema = config_schema_of(version.manifest)
    masked = service.masked_config(inst, version.manifest)
    stored = frozenset(k for k, v in masked.items() if isinstance(v, dict) and v.get("set"))
    problems: list[ProblemDetail] = []
    raw: Any = to_raw(schema, inst.config, use_defaults=False)
    status = 200
    if request.method == "POST":
        config, parse_problems = parse_form(schema, request.form)
        if not parse_problems:
            try:
                service.update_config(get_session(), inst, config, current_user())
            except MarketplaceError as exc:
                if exc.code != "invalid_config":
                    raise
                problems = _config_problems(exc.details)
            else:
                flash(f"Settings of {inst.gear.title} saved.", "success")
                return redirect(dashboard_url(workspace))
        problems = _merge(parse_problems, problems)
        raw, status = request.form, 422
    fields = build_form(schema, raw, stored)
    general = attach_errors(fields, problems)
    return render_template("install/settings.html", ws=workspace, inst=inst, fields=fields,
                           general=general, error_count=len(problems)), status


@bp.route("/workspaces/<ws>/installations/<installation_id>/upgrade",
          methods=["GET", "POST"])
@login_required
def upgrade(ws: str, installation_id: str) -> Response | tuple[str, int]:
    """Move to a newer or an earlier version, showing what changes in permissions."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    choices = [v for v in _installable(inst.gear) if v.version != inst.version]
    latest = choices[0].version if choices else None
    target = request.values.get("version") or latest
    plan, plan_error, error = None, None, None
    if target:
        try:
            plan = service.plan_install(get_session(), workspace, inst.gear.name, target)
        except MarketplaceError as exc:
            plan_error = exc
    if request.method == "POST" and plan is not None:
        consent: list[str] | bool = (request.form.getlist("capability")
                                     if request.form.get("consent") == "yes" else False)
        previous = inst.version
        try:
            service.upgrade(get_session(), inst, version_spec=target, consent=consent,
                            actor=current_user())
        except MarketplaceError as exc:
            if exc.code == "consent_required":
                error = "Tick the box to allow the new permissions, or pick another version."
            elif exc.code == "invalid_config":
                error = ("The settings do not fit this version: "
                         + "; ".join(f"{p['path']} {p['message']}"
                                     for p in _config_problems(exc.details))
                         + ". Change the settings first.")
            else:
                error = exc.message
        else:
            verb = "Upgraded" if Version.parse(inst.version) > \
                Version.parse(previous) else "Moved back"
            flash(f"{verb} {inst.gear.title} from {previous} to {inst.version}.", "success")
            return redirect(dashboard_url(workspace))
    return render_template("install/upgrade.html", ws=workspace, inst=inst,
                           info=service.installation_json(inst, base_url()), choices=choices,
                           target=target, plan=plan, plan_error=plan_error,
                           error=error), 422 if error else 200
