"""Trust endpoints: the registry's public keys, the signed kill list, quarantine, re-vetting.

``GET /api/v1/keys`` and ``GET /api/v1/killlist`` are public: runtimes
fetch them without credentials, and trust them only because of the
signature (the kill list) or because they were pinned out of band (the keys).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from marketplace import audit
from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion
from marketplace.registry import queries, states
from marketplace.registry.api import _reason_from_body, _require_user, _version_or_404, base_url
from marketplace.registry.signing import keyring, sign_document
from marketplace.vetting.jobs import enqueue

bp = Blueprint("registry_trust", __name__, url_prefix="/api/v1")


@bp.get("/keys")
def keys() -> Response:
    """Every public key that signed here (the current one first)."""
    ring = keyring()
    ring.ensure()
    return jsonify(ring.keys_json())


def killlist_document() -> dict[str, object]:
    """Every quarantined version, newest first, with the time it was issued."""
    rows = get_session().execute(
        select(Gear.name, GearVersion.version, GearVersion.sha256, GearVersion.quarantine_reason)
        .join(Gear, GearVersion.gear_id == Gear.id)
        .where(GearVersion.quarantined.is_(True))
        .order_by(Gear.name, GearVersion.id)).all()
    return {
        "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "entries": [{"name": n, "version": v, "sha256": sha, "reason": reason or ""}
                    for n, v, sha, reason in rows],
    }


@bp.get("/killlist")
def killlist() -> Response:
    """The signed list of quarantined versions that runtimes poll."""
    resp = jsonify(sign_document(keyring(), killlist_document()))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _admin_version(publisher: str, name: str, version: str) -> tuple[object, GearVersion]:
    v = _require_user()
    if not v.is_admin:
        raise MarketplaceError(403, "forbidden", "only admins may change a version's trust "
                               "state")
    return v, _version_or_404(publisher, name, version, v)


def _quarantine(publisher: str, name: str, version: str, on: bool) -> Response:
    v, row = _admin_version(publisher, name, version)
    states.set_quarantined(get_session(), v.user, row, quarantined=on,  # type: ignore[attr-defined]
                           reason=_reason_from_body())
    return jsonify(queries.version_json(row, base_url(), private=True))


@bp.post("/admin/gears/<publisher>/<name>/<version>/quarantine")
def quarantine(publisher: str, name: str, version: str) -> Response:
    """Block a version from loading anywhere; runtimes stop it at their next poll."""
    return _quarantine(publisher, name, version, True)


@bp.post("/admin/gears/<publisher>/<name>/<version>/unquarantine")
def unquarantine(publisher: str, name: str, version: str) -> Response:
    return _quarantine(publisher, name, version, False)


@bp.post("/admin/gears/<publisher>/<name>/<version>/revet")
def revet(publisher: str, name: str, version: str) -> tuple[Response, int]:
    """Queue the checks again (after a scanner error or a new check)."""
    v, row = _admin_version(publisher, name, version)
    reason = states.check_reason(_reason_from_body(), required=False, what="revet")
    session = get_session()
    enqueue(session, row)
    audit.record(session, v.user, "version.revet", "version",  # type: ignore[attr-defined]
                 f"{row.gear.name}@{row.version}", reason=reason)
    session.commit()
    return jsonify(queries.version_json(row, base_url(), private=True)), 202
