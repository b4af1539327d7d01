"""A workspace's pages: its installed gears and what can be done to each.

Only members of a workspace (and admins) see it; anyone else gets a 404, so
workspace names are not revealed. Every change goes through
:mod:`marketplace.workspaces`, the same service the JSON API uses.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from marketplace import workspaces as service
from marketplace.accounts import get_workspace
from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace
from marketplace.registry.queries import sorted_versions
from marketplace.web.connection import test_connection as run_connection_test
from marketplace.web.session import current_user, is_admin, login_required

bp = Blueprint("web_workspace", __name__)


def base_url() -> str:
    return (current_app.config["BASE_URL"] or request.host_url).rstrip("/")


def workspace_or_404(name: str) -> Workspace:
    """The workspace, if the signed-in user may manage it."""
    user = current_user()
    ws = get_workspace(get_session(), name)
    if ws is None or user is None or not (
            is_admin(user) or any(m.user_id == user.id for m in ws.members)):
        abort(404, f"there is no workspace called {name} that you can see")
    return ws


def installation_or_404(ws: Workspace, installation_id: str) -> Any:
    try:
        return service.get_installation(get_session(), ws, installation_id)
    except MarketplaceError:
        abort(404, "this gear is not installed in this workspace")


def dashboard_url(ws: Workspace) -> str:
    return url_for("web_workspace.dashboard", ws=ws.name)


@bp.get("/workspaces")
@login_required
def workspaces() -> Response | str:
    """The user's workspaces; with only one, go straight to it."""
    user = current_user()
    assert user is not None
    mine = sorted((m.workspace for m in user.workspace_memberships), key=lambda w: w.name)
    if len(mine) == 1 and not request.args.get("all"):
        return redirect(dashboard_url(mine[0]))
    counts = {w.id: len(service.list_installations(get_session(), w)) for w in mine}
    return render_template("workspaces/list.html", workspaces=mine, counts=counts)


@bp.get("/workspaces/<ws>")
@login_required
def dashboard(ws: str) -> str:
    """Installed gears with their version, status, health and available upgrades."""
    workspace = workspace_or_404(ws)
    rows = [service.installation_json(i, base_url())
            for i in service.list_installations(get_session(), workspace)]
    return render_template("workspaces/dashboard.html", ws=workspace, installations=rows)


@bp.post("/workspaces/<ws>/installations/<installation_id>/enabled")
@login_required
def set_enabled(ws: str, installation_id: str) -> Response:
    """Turn a gear off (the engine stops calling it) or back on."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    enable = request.form.get("enabled") == "1"
    reason = (request.form.get("reason") or "").strip() or None
    try:
        service.set_enabled(get_session(), inst, enable, current_user(),
                            reason=None if enable else reason)
    except MarketplaceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{inst.gear.title} is {'enabled' if enable else 'disabled'}.", "success")
    return redirect(dashboard_url(workspace))


@bp.route("/workspaces/<ws>/installations/<installation_id>/uninstall",
          methods=["GET", "POST"])
@login_required
def uninstall(ws: str, installation_id: str) -> Response | str:
    """A confirmation page, then the removal (its config and secrets are deleted)."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    if request.method == "GET":
        return render_template("workspaces/uninstall.html", ws=workspace,
                               inst=service.installation_json(inst, base_url()))
    title = inst.gear.title
    try:
        service.uninstall(get_session(), inst, current_user())
    except MarketplaceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{title} was uninstalled.", "success")
    return redirect(dashboard_url(workspace))


@bp.post("/workspaces/<ws>/installations/<installation_id>/test")
@login_required
def test_connection(ws: str, installation_id: str) -> Response:
    """Ask the engine to check a connector's connection (``gear_check``)."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    try:
        result = run_connection_test(current_app, workspace.name, inst.id)
    except MarketplaceError as exc:
        flash(f"The connection test could not run: {exc.message}", "error")
    else:
        flash(f"{inst.gear.title}: {result.message}", "success" if result.ok else "error")
    return redirect(dashboard_url(workspace))


@bp.get("/workspaces/<ws>/installations/<installation_id>")
@login_required
def installation(ws: str, installation_id: str) -> str:
    """One installation: its settings, permissions and the versions it could move to."""
    workspace = workspace_or_404(ws)
    inst = installation_or_404(workspace, installation_id)
    versions = [v for v in sorted_versions(inst.gear.versions)
                if v.status.value == "approved" and not v.quarantined]
    return render_template("workspaces/installation.html", ws=workspace, inst_row=inst,
                           inst=service.installation_json(inst, base_url()), versions=versions)
