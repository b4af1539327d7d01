"""``/api/v1/workspaces/<ws>/installations``: installing gears through the JSON API.

Who may call: a token holding ``workspace:<ws>`` whose user is still a member
of the workspace, or an admin token. Anyone else gets 403, and so does a
workspace that does not exist — unless the caller is an admin — so workspace
names cannot be probed. No token at all is 401.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from marketplace.accounts import get_workspace, token_allows
from marketplace.auth import require_token
from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.http_input import json_body
from marketplace.models import User, Workspace
from marketplace.workspaces import service
from marketplace.workspaces.planning import plan_install
from marketplace.workspaces.serialize import installation_json, installation_url, plan_json

bp = Blueprint("workspaces_api", __name__, url_prefix="/api/v1/workspaces")

_POST_FIELDS = {"gear", "version", "config", "consent"}
_PATCH_FIELDS = {"version", "config", "enabled", "consent", "reason"}


def _base_url() -> str:
    return (current_app.config["BASE_URL"] or request.host_url).rstrip("/")


def _workspace(name: str) -> tuple[Workspace, User]:
    """The workspace and the acting user, after the check described in the module doc."""
    token = require_token()
    ws = get_workspace(get_session(), name)
    if token_allows(token, "admin"):
        if ws is None:
            raise MarketplaceError(404, "workspace_not_found", f"there is no workspace {name!r}")
        return ws, token.user
    if ws is None or not token_allows(token, f"workspace:{name}"):
        raise MarketplaceError(403, "forbidden", f"this token may not manage the workspace "
                               f"{name!r}: it needs the scope 'workspace:{name}' and its user "
                               "must be a member")
    return ws, token.user


def _body(allowed: set[str]) -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise MarketplaceError(400, "invalid_json", "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise MarketplaceError(422, "invalid_body", "unknown field(s): " + ", ".join(unknown),
                               [{"path": f"$.{k}", "message": "unknown field",
                                 "code": "unknown_field"} for k in unknown])
    problems = []
    checks = {"gear": str, "config": dict, "enabled": bool, "reason": str}
    for key, kind in checks.items():
        if key in body and not isinstance(body[key], kind) \
                and not (key in ("config", "reason") and body[key] is None):
            problems.append({"path": f"$.{key}", "message": f"must be {_KIND_NAMES[kind]}",
                             "code": "schema.type"})
    if "version" in body and body["version"] is not None and not isinstance(body["version"], str):
        problems.append({"path": "$.version", "message": "must be a version, a range or null",
                         "code": "schema.type"})
    if problems:
        raise MarketplaceError(422, "invalid_body", "the request body has "
                               f"{len(problems)} problem(s)", problems)
    return body


_KIND_NAMES = {str: "a string", dict: "an object", bool: "true or false"}


@bp.get("/<ws>/installations")
def list_installations(ws: str) -> Response:
    workspace, _ = _workspace(ws)
    items = service.list_installations(get_session(), workspace)
    return jsonify({"items": [installation_json(i, _base_url()) for i in items]})


@bp.post("/<ws>/installations")
def create_installation(ws: str) -> tuple[Response, int, dict[str, str]]:
    """Install a gear: ``{"gear", "version", "config", "consent"}``."""
    workspace, user = _workspace(ws)
    body = _body(_POST_FIELDS)
    if "gear" not in body:
        raise MarketplaceError(422, "invalid_body", "name the gear to install, e.g. "
                               '{"gear": "acme/rfm-score"}',
                               [{"path": "$.gear", "message": "this field is required",
                                 "code": "schema.required"}])
    inst = service.install(get_session(), workspace, body["gear"],
                           version_spec=body.get("version"), config=body.get("config"),
                           consent=body.get("consent", False), actor=user)
    return (jsonify(installation_json(inst, _base_url())), 201,
            {"Location": installation_url(inst, _base_url())})


@bp.get("/<ws>/installations/plan")
def plan(ws: str) -> Response:
    """What installing (or upgrading to) ``?gear=…&version=…`` would do; changes nothing."""
    workspace, _ = _workspace(ws)
    gear = request.args.get("gear")
    if not gear:
        raise MarketplaceError(422, "invalid_parameter", "'gear' is required, e.g. "
                               "?gear=acme/rfm-score",
                               [{"path": "gear", "message": "required", "code": "required"}])
    result = plan_install(get_session(), workspace, gear, request.args.get("version") or None)
    return jsonify(plan_json(result, _base_url()))


@bp.get("/<ws>/installations/<installation_id:installation_id>")
def get_installation(ws: str, installation_id: str) -> Response:
    workspace, _ = _workspace(ws)
    inst = service.get_installation(get_session(), workspace, installation_id)
    return jsonify(installation_json(inst, _base_url()))


@bp.patch("/<ws>/installations/<installation_id:installation_id>")
def patch_installation(ws: str, installation_id: str) -> Response:
    """Upgrade/downgrade (``version``), reconfigure (``config``), enable or disable.

    ``version`` (even ``null``: the newest its constraint allows) moves the
    installation, validating ``config`` against the target version when both
    are given; ``enabled`` is applied last.
    """
    workspace, user = _workspace(ws)
    body = _body(_PATCH_FIELDS)
    session = get_session()
    inst = service.get_installation(session, workspace, installation_id)
    if "version" in body:
        service.upgrade(session, inst, version_spec=body["version"],
                        consent=body.get("consent", False), actor=user,
                        config=body.get("config"))
    elif "config" in body:
        service.update_config(session, inst, body["config"], user)
    if "enabled" in body:
        service.set_enabled(session, inst, body["enabled"], user, reason=body.get("reason"))
    return jsonify(installation_json(inst, _base_url()))


@bp.delete("/<ws>/installations/<installation_id:installation_id>")
def delete_installation(ws: str, installation_id: str) -> tuple[str, int]:
    workspace, user = _workspace(ws)
    session = get_session()
    service.uninstall(session, service.get_installation(session, workspace, installation_id),
                      user)
    return "", 204
