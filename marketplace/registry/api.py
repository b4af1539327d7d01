"""``/api/v1/gears``: the registry's JSON API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request, send_file

from gears_sdk.hookspecs import KINDS
from marketplace.auth import current_token, current_user
from marketplace.blobs import get_blob_store as get_store
from marketplace.db import get_session
from marketplace.errors import APIError, MarketplaceError
from marketplace.http_input import json_body
from marketplace.models import GearVersion
from marketplace.registry import publish as publishing
from marketplace.registry import queries, states
from marketplace.registry.queries import MAX_PER_PAGE, SearchQuery
from marketplace.registry.signing import keyring, sign_version
from marketplace.registry.viewer import Viewer
from marketplace.settings import as_bool
from marketplace.storage import BlobNotFound, StorageError

bp = Blueprint("registry_api", __name__, url_prefix="/api/v1")

ARCHIVE_MIMETYPE = "application/vnd.gears.gear+zip"


def base_url() -> str:
    return (current_app.config["BASE_URL"] or request.host_url).rstrip("/")


def viewer() -> Viewer:
    return Viewer(user=current_user(), token=current_token())


def _require_user() -> Viewer:
    v = viewer()
    if v.user is None:
        raise APIError.unauthorized("sign in with an API token: send "
                                    "'Authorization: Bearer <token>'")
    return v


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise MarketplaceError(422, "invalid_parameter", f"'{name}' must be a whole number "
                               f"from {lo} to {hi}",
                               [{"path": name, "message": f"from {lo} to {hi}", "code": "range"}])
    return value


def _version_or_404(publisher: str, name: str, version: str, v: Viewer) -> GearVersion:
    row = queries.get_version(get_session(), publisher, name, version)
    if row is None or not queries.can_see_version(v, row):
        raise MarketplaceError(404, "not_found", f"{publisher}/{name} {version} does not exist")
    return row


@bp.post("/gears")
def publish_gear() -> tuple[Response, int, dict[str, str]]:
    """Upload a .gear archive; it becomes a pending version."""
    v = _require_user()
    file = request.files.get("file")
    if file is None:
        raise MarketplaceError(400, "missing_file", "send the .gear archive as the multipart "
                               "form field 'file'")
    upload = publishing.Upload(data=file.read(), user=v.user, token=v.token)  # type: ignore[arg-type]
    session = get_session()
    version = publishing.publish(session, get_store(), upload)
    body = publishing.answer_for(session, version,
                                 lambda row: queries.version_json(row, base_url(), private=True))
    return jsonify(body), 201, {"Location": body["url"]}


@bp.get("/gears")
def list_gears() -> Response:
    """Search and list gears."""
    kind = request.args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise MarketplaceError(422, "invalid_parameter", f"'kind' must be one of {', '.join(KINDS)}",
                               [{"path": "kind", "message": "unknown kind", "code": "enum"}])
    query = SearchQuery(
        q=(request.args.get("q") or "").strip()[:200],
        kind=kind,
        category=request.args.get("category") or None,
        publisher=request.args.get("publisher") or None,
        page=_int_arg("page", 1, 1, 10_000),
        per_page=_int_arg("per_page", 20, 1, MAX_PER_PAGE),
    )
    v = viewer()
    gears, total = queries.search_gears(get_session(), query, v)
    return jsonify({
        "items": [queries.gear_json(g, v, base_url()) for g in gears],
        "total": total,
        "page": query.page,
        "per_page": query.per_page,
    })


@bp.get("/gears/<publisher>/<name>")
def get_gear(publisher: str, name: str) -> Response:
    v = viewer()
    gear = queries.get_gear(get_session(), publisher, name)
    if gear is None or not (v.manages(gear) or queries.latest_public(gear)
                            or any(queries.can_see_version(v, x) for x in gear.versions)):
        raise MarketplaceError(404, "not_found", f"{publisher}/{name} does not exist")
    return jsonify(queries.gear_json(gear, v, base_url()))


@bp.get("/gears/<publisher>/<name>/<version>")
def get_version(publisher: str, name: str, version: str) -> Response:
    v = viewer()
    row = _version_or_404(publisher, name, version, v)
    return jsonify(queries.version_json(row, base_url(), private=v.manages(row.gear)))


@bp.get("/gears/<publisher>/<name>/<version>/download")
def download(publisher: str, name: str, version: str) -> Any:
    """The archive's bytes, or a redirect to a short-lived presigned URL."""
    v = viewer()
    row = _version_or_404(publisher, name, version, v)
    if row.quarantined and not v.is_admin:
        raise MarketplaceError(403, "quarantined", f"{row.gear.name} {row.version} is "
                               f"quarantined and cannot be downloaded: {row.quarantine_reason}")
    store = get_store()
    filename = f"{publisher}-{name}-{version}.gear"
    headers = {"X-Gears-Sha256": row.sha256}
    try:
        if as_bool(current_app.config["DOWNLOAD_REDIRECT"]):
            url = store.presigned_url(row.sha256, expires=300, filename=filename)
            if url:
                resp = redirect(url, code=302)
                resp.headers.update(headers)
                return resp
        fh = store.open(row.sha256)
    except BlobNotFound:
        current_app.logger.error("blob %s of %s@%s is missing", row.sha256, row.gear.name, version)
        raise MarketplaceError(500, "blob_missing", "the archive is missing from storage; "
                               "an operator has been alerted") from None
    except StorageError as exc:
        current_app.logger.warning("download of %s failed: %s", row.sha256, exc.message)
        raise MarketplaceError(503, "storage_unavailable", f"storage is unavailable: "
                               f"{exc.public_message}; try again later") from None
    resp = send_file(fh, mimetype=ARCHIVE_MIMETYPE, as_attachment=True, download_name=filename,
                     etag=row.sha256, conditional=True, max_age=31536000)
    resp.headers.update(headers)
    return resp


def _reason_from_body() -> str | None:
    body = json_body(optional=True)
    if body is not None and not isinstance(body, dict):
        raise MarketplaceError(400, "invalid_json", "the request body must be a JSON object")
    reason = (body or {}).get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MarketplaceError(422, "invalid_parameter", "'reason' must be a string",
                               [{"path": "$.reason", "message": "must be a string", "code": "type"}])
    return reason


def _yank(publisher: str, name: str, version: str, yanked: bool) -> Response:
    v = _require_user()
    row = _version_or_404(publisher, name, version, v)
    if not v.manages(row.gear):
        raise MarketplaceError(403, "forbidden", f"only members of '{publisher}' and admins may "
                               "yank its versions")
    states.set_yanked(get_session(), v.user, row, yanked=yanked,  # type: ignore[arg-type]
                      reason=_reason_from_body())
    return jsonify(queries.version_json(row, base_url(), private=True))


@bp.post("/gears/<publisher>/<name>/<version>/yank")
def yank(publisher: str, name: str, version: str) -> Response:
    """Hide a version from new installs; it stays downloadable by exact version."""
    return _yank(publisher, name, version, True)


@bp.post("/gears/<publisher>/<name>/<version>/unyank")
def unyank(publisher: str, name: str, version: str) -> Response:
    return _yank(publisher, name, version, False)


def _review(publisher: str, name: str, version: str, approve: bool) -> Response:
    v = _require_user()
    if not v.is_admin:
        raise MarketplaceError(403, "forbidden", "only admins may review versions")
    row = _version_or_404(publisher, name, version, v)
    states.review(get_session(), v.user, row, approve=approve,  # type: ignore[arg-type]
                  reason=_reason_from_body(), sign=signer())
    return jsonify(queries.version_json(row, base_url(), private=True))


def signer() -> states.Signer:
    """Signs approvals with the registry key, from the archive in storage."""
    ring, store = keyring(), get_store()
    return lambda session, row: sign_version(session, row, ring, store)


@bp.post("/admin/gears/<publisher>/<name>/<version>/approve")
def approve(publisher: str, name: str, version: str) -> Response:
    return _review(publisher, name, version, True)


@bp.post("/admin/gears/<publisher>/<name>/<version>/reject")
def reject(publisher: str, name: str, version: str) -> Response:
    return _review(publisher, name, version, False)
