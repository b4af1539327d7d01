"""Carrying a validated config from the install form to the consent screen.

Between the two steps the config (secrets included) must survive without
being shown back in the page and without server-side state (any replica may
serve the next request). It travels in a hidden field, encrypted and
authenticated with a key derived from the app's ``SECRET_KEY`` (Fernet), bound
to the user, workspace, gear and version, and valid for a limited time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from marketplace.errors import MarketplaceError

MAX_AGE_SECONDS = 30 * 60


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"gears-web-pending-install:"
                            + str(current_app.config["SECRET_KEY"]).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(*, user_id: int, workspace: str, gear: str, version: str,
         config: dict[str, Any]) -> str:
    """An opaque token holding ``config`` for this user, workspace, gear and version."""
    body = {"u": user_id, "w": workspace, "g": gear, "v": version, "c": config}
    return _fernet().encrypt(json.dumps(body, separators=(",", ":")).encode()).decode()


def unseal(token: str, *, user_id: int, workspace: str, gear: str) -> tuple[str, dict[str, Any]]:
    """``(version, config)`` from a token made by :func:`seal` for the same user,
    workspace and gear; 400 ``install_expired`` when it is stale, forged or foreign."""
    expired = MarketplaceError(400, "install_expired", "this install form has expired; "
                               "fill it in again")
    try:
        body = json.loads(_fernet().decrypt(token.encode(), ttl=MAX_AGE_SECONDS))
    except (InvalidToken, ValueError):
        raise expired from None
    if (body.get("u"), body.get("w"), body.get("g")) != (user_id, workspace, gear):
        raise expired
    return str(body["v"]), dict(body.get("c") or {})
