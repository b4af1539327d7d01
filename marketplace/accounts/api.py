"""Account endpoints of the JSON API (``/api/v1``)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from marketplace.auth import require_token

bp = Blueprint("accounts_api", __name__, url_prefix="/api/v1")


@bp.get("/whoami")
def whoami() -> Response:
    """Who the presented token belongs to: lets ``gears login`` check a token."""
    token = require_token()
    user = token.user
    return jsonify({
        "email": user.email,
        "role": user.role.value,
        "scopes": list(token.scopes),
        "publishers": sorted(m.publisher.name for m in user.publisher_memberships),
        "workspaces": sorted(m.workspace.name for m in user.workspace_memberships),
    })
