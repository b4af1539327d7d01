"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

Schemas are JSON Schema 2020-12 (as OpenAPI 3.1 allows), so the tests check
real responses against them with ``jsonschema``; another test fails when a
route under ``/api/v1`` is missing from ``paths``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify

import gears_sdk
from gears_sdk.hookspecs import KINDS
from marketplace.openapi_parts import (
    BOOL,
    DATE,
    INT,
    PROBLEM,
    STR,
    errors,
    gear_params,
    json_content,
    nullable,
    query_param,
    ref,
    state_change,
)
from marketplace.registry import openapi_trust as trust
from marketplace.workspaces.health import ACTIONS as HEALTH_ACTIONS
from marketplace.workspaces.health import STATES as HEALTH_STATES
from marketplace.workspaces.models import InstallationStatus

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {**STR, "description": "stable, machine-readable"},
                    "message": {**STR, "description": "for people: what went wrong, what to do"},
                    "details": {"type": "array", "items": ref("Problem")},
                },
            }
        },
    },
    "Problem": PROBLEM,
    "VersionSummary": {
        "type": "object",
        "required": ["name", "version", "status", "yanked", "quarantined", "created_at"],
        "properties": {
            "name": STR, "version": STR,
            "status": {"enum": ["pending", "approved", "rejected"]},
            "yanked": BOOL, "quarantined": BOOL, "created_at": nullable(DATE),
            "engine": {**nullable(STR), "description": "the engine versions it runs on "
                       "(the manifest's range)"},
            "engine_compatible": {**BOOL, "description": "whether the engine this server "
                                  "runs is in that range; a version outside it is refused "
                                  "on install (`engine_incompatible`)"},
        },
    },
    "Version": {
        "allOf": [ref("VersionSummary")],
        "type": "object",
        "required": ["kind", "sha256", "size", "manifest", "url", "download_url", "web_url"],
        "properties": {
            "kind": {"enum": list(KINDS)},
            "title": STR, "summary": STR,
            "yank_reason": nullable(STR), "quarantine_reason": nullable(STR),
            "review_reason": nullable(STR), "reviewed_at": nullable(DATE),
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": INT,
            "manifest": {"type": "object"},
            "url": STR, "download_url": STR, "web_url": STR,
        },
    },
    "Gear": {
        "type": "object",
        "required": ["name", "publisher", "kind", "title", "summary", "categories",
                     "latest_version", "install_count", "versions"],
        "properties": {
            "name": STR, "publisher": STR,
            "kind": {"enum": list(KINDS)},
            "title": STR, "summary": STR,
            "categories": {"type": "array", "items": STR},
            "latest_version": nullable(STR),
            "install_count": INT,
            "created_at": nullable(DATE), "updated_at": nullable(DATE),
            "url": STR, "web_url": STR,
            "versions": {"type": "array", "items": ref("VersionSummary")},
        },
    },
    "GearList": {
        "type": "object",
        "required": ["items", "total", "page", "per_page"],
        "properties": {
            "items": {"type": "array", "items": ref("Gear")},
            "total": INT, "page": INT, "per_page": INT,
        },
    },
    "Reason": {
        "type": "object",
        "properties": {"reason": {"type": "string", "maxLength": 2000}},
    },
    "WhoAmI": {
        "type": "object",
        "required": ["email", "role", "scopes", "publishers", "workspaces"],
        "properties": {
            "email": STR,
            "role": {"enum": ["admin", "developer", "business"]},
            "scopes": {"type": "array", "items": STR},
            "publishers": {"type": "array", "items": STR},
            "workspaces": {"type": "array", "items": STR},
        },
    },
    "Capability": {
        "type": "object",
        "required": ["capability", "description"],
        "properties": {
            "capability": {**STR, "description": "e.g. network:api.example.com"},
            "description": {**STR, "description": "the same in plain language"},
        },
    },
    "Installation": {
        "type": "object",
        "required": ["id", "workspace", "gear", "title", "kind", "version", "constraint",
                     "status", "enabled", "disabled_reason", "config", "capabilities",
                     "latest_version", "upgrade_available", "health", "created_at",
                     "updated_at", "url"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "workspace": STR, "gear": STR, "title": STR,
            "kind": {"enum": list(KINDS)},
            "version": {**STR, "description": "the version that runs"},
            "constraint": {**STR, "description": "the range asked for, or the exact version"},
            "status": {"enum": [s.value for s in InstallationStatus]},
            "enabled": BOOL,
            "disabled_reason": nullable(STR),
            "config": {"type": "object", "description": "secret fields appear only as "
                       '{"set": true|false}, never with their value'},
            "capabilities": {"type": "array", "items": ref("Capability")},
            "latest_version": nullable(STR),
            "upgrade_available": BOOL,
            "version_yanked": BOOL, "version_quarantined": BOOL,
            "health": ref("InstallationHealth"),
            "created_at": nullable(DATE), "updated_at": nullable(DATE),
            "url": STR,
        },
    },
    "InstallationHealth": {
        "type": "object",
        "description": "The installation's explicit state and the numbers every engine process "
                       "adds to (the same from every web process; kept across restarts)",
        "required": ["state", "reason", "next_step", "next_action", "calls", "errors",
                     "timeouts", "restarts", "busy", "failures", "p50_ms", "p99_ms",
                     "last_error", "last_error_at", "last_call_at", "logs", "updated_at"],
        "additionalProperties": False,
        "properties": {
            "state": {"enum": list(HEALTH_STATES)},
            "reason": {**STR, "description": "why it is in this state, in words"},
            "next_step": {**STR, "description": "what the workspace's members can do"},
            "next_action": {"enum": list(HEALTH_ACTIONS)},
            "calls": INT, "errors": INT, "timeouts": INT, "restarts": INT,
            "busy": {**INT, "description": "calls refused at once because the gear was busy"},
            "failures": {"type": "object", "additionalProperties": INT,
                         "description": "failed calls by error code"},
            "p50_ms": nullable({"type": "number", "description": "upper bound of the "
                                "latency bucket holding the median call"}),
            "p99_ms": nullable({"type": "number"}),
            "last_error": nullable(STR), "last_error_at": nullable(DATE),
            "last_call_at": nullable(DATE),
            "logs": {"type": "array", "maxItems": 20, "items": {
                "type": "object", "required": ["at", "level", "message"],
                "properties": {"at": DATE, "level": STR, "message": STR}},
                "description": "the last ctx.log lines, oldest first"},
            "updated_at": nullable(DATE),
        },
    },
    "InstallationList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref("Installation")}},
    },
    "InstallPlan": {
        "type": "object",
        "required": ["gear", "title", "kind", "version", "constraint", "capabilities",
                     "consent_required", "config_schema", "secret_fields", "requires",
                     "resolution", "upgrade"],
        "properties": {
            "gear": STR, "title": STR, "summary": STR,
            "kind": {"enum": list(KINDS)},
            "version": STR, "constraint": STR,
            "capabilities": {"type": "array", "items": ref("Capability")},
            "consent_required": BOOL,
            "config_schema": {"type": "object"},
            "secret_fields": {"type": "array", "items": STR},
            "requires": {"type": "array", "items": {
                "type": "object", "required": ["gear", "range", "installed_version", "satisfied"],
                "properties": {"gear": STR, "range": STR,
                               "installed_version": nullable(STR), "satisfied": BOOL}}},
            "resolution": {"type": "object", "additionalProperties": STR},
            "upgrade": nullable({
                "type": "object",
                "required": ["installation", "from_version", "added", "removed", "unchanged"],
                "properties": {
                    "installation": STR, "from_version": STR,
                    "added": {"type": "array", "items": ref("Capability")},
                    "removed": {"type": "array", "items": ref("Capability")},
                    "unchanged": {"type": "array", "items": ref("Capability")},
                }}),
            "version_url": STR,
        },
    },
    "InstallRequest": {
        "type": "object",
        "required": ["gear"],
        "additionalProperties": False,
        "properties": {
            "gear": {**STR, "description": "publisher/name"},
            "version": nullable({**STR, "description": "a version or range; newest if null"}),
            "config": {"type": "object"},
            "consent": {"anyOf": [BOOL, {"type": "array", "items": STR}],
                        "description": "true, or every capability of the chosen version"},
        },
    },
    "InstallationPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": nullable({**STR, "description": "move to this version or range; "
                                  "null: the newest the stored constraint allows"}),
            "config": {"type": "object", "description": "the whole config; a secret left "
                       "out or blank keeps its value, null clears it"},
            "enabled": BOOL,
            "consent": {"anyOf": [BOOL, {"type": "array", "items": STR}]},
            "reason": {"type": "string", "maxLength": 2000},
        },
    },
}


PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": {"summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}
    },
    "/api/v1/whoami": {
        "get": {"summary": "Who the token belongs to", "security": [{"bearer": []}],
                "responses": {"200": {"description": "The token's user", **json_content("WhoAmI")},
                              **errors(401)}}
    },
    "/api/v1/gears": {
        "get": {
            "summary": "Search and list gears",
            "description": "Non-admins see only gears with an approved, non-yanked version.",
            "parameters": [
                query_param("q", STR, "words in the name, title or summary"),
                query_param("kind", {"enum": list(KINDS)}, "kind of gear"),
                query_param("category", STR, "a category"),
                query_param("publisher", STR, "a publisher's namespace"),
                query_param("page", {"type": "integer", "minimum": 1, "maximum": 10000}, "page, from 1"),
                query_param("per_page", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
            ],
            "responses": {"200": {"description": "A page of gears", **json_content("GearList")},
                          **errors(422)},
        },
        "post": {
            "summary": "Publish a version",
            "description": "Upload a .gear archive (multipart field 'file'). The archive is "
                           "safety-checked and its manifest validated; the version starts "
                           "pending review. Needs a token with publish:<publisher>.",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "contentMediaType": "application/zip"}},
            }}}},
            "responses": {"201": {"description": "Published, pending review", **json_content("Version")},
                          **errors(400, 401, 403, 409, 413, 422, 503)},
        },
    },
    "/api/v1/gears/{publisher}/{name}": {
        "get": {"summary": "A gear and its versions", "parameters": gear_params(),
                "responses": {"200": {"description": "The gear", **json_content("Gear")}, **errors(404)}}
    },
    "/api/v1/gears/{publisher}/{name}/{version}": {
        "get": {"summary": "One version", "parameters": gear_params(True),
                "responses": {"200": {"description": "The version", **json_content("Version")},
                              **errors(404)}}
    },
    "/api/v1/gears/{publisher}/{name}/{version}/download": {
        "get": {
            "summary": "Download the archive",
            "description": "The bytes (header X-Gears-Sha256 carries their sha256) or a 302 "
                           "redirect to a short-lived presigned URL.",
            "parameters": gear_params(True),
            "responses": {
                "200": {"description": "The archive",
                        "headers": {"X-Gears-Sha256": {"schema": STR}},
                        "content": {"application/vnd.gears.gear+zip": {"schema": {"type": "string"}}}},
                "302": {"description": "Redirect to a presigned URL",
                        "headers": {"Location": {"schema": STR}}},
                "304": {"description": "Not modified"},
                **errors(403, 404, 503),
            },
        }
    },
    "/api/v1/gears/{publisher}/{name}/{version}/yank": state_change(
        "Yank a version", "Owner or admin; a reason is required."),
    "/api/v1/gears/{publisher}/{name}/{version}/unyank": state_change(
        "Undo a yank", "Owner or admin."),
    "/api/v1/admin/gears/{publisher}/{name}/{version}/approve": state_change(
        "Approve a pending version", "Admin only."),
    "/api/v1/admin/gears/{publisher}/{name}/{version}/reject": state_change(
        "Reject a pending version", "Admin only; a reason the publisher can read is required."),
}

_WS = [{"name": "ws", "in": "path", "required": True, "schema": STR,
        "description": "the workspace's name"}]
_INST = [*_WS, {"name": "installation_id", "in": "path", "required": True, "schema": STR}]
_WS_AUTH = ("Needs a token with workspace:<ws> whose user is a member, or an admin token. "
            "A workspace that does not exist is 403 unless the caller is an admin.")

PATHS.update({
    "/api/v1/workspaces/{ws}/installations": {
        "get": {"summary": "The workspace's installations", "description": _WS_AUTH,
                "parameters": _WS, "security": [{"bearer": []}],
                "responses": {"200": {"description": "Installations",
                                      **json_content("InstallationList")}, **errors(401, 403, 404)}},
        "post": {
            "summary": "Install a gear",
            "description": "Resolves the version against the workspace's other gears, checks "
                           "consent to every capability and validates the config. " + _WS_AUTH,
            "parameters": _WS, "security": [{"bearer": []}],
            "requestBody": {"required": True, **json_content("InstallRequest")},
            "responses": {"201": {"description": "Installed", **json_content("Installation"),
                                  "headers": {"Location": {"schema": STR}}},
                          **errors(400, 401, 403, 404, 409, 422)},
        },
    },
    "/api/v1/workspaces/{ws}/installations/plan": {
        "get": {
            "summary": "Preview an install or upgrade",
            "description": "The version that would be chosen, its capabilities in plain "
                           "language, its config schema, its dependencies and, when the gear "
                           "is installed, the capability diff. Changes nothing. " + _WS_AUTH,
            "parameters": [
                *_WS,
                {**query_param("gear", STR, "publisher/name"), "required": True},
                query_param("version", STR, "a version or range; newest when absent"),
            ],
            "security": [{"bearer": []}],
            "responses": {"200": {"description": "The plan", **json_content("InstallPlan")},
                          **errors(401, 403, 404, 409, 422)},
        }
    },
    "/api/v1/workspaces/{ws}/installations/{installation_id}": {
        "get": {"summary": "One installation", "description": _WS_AUTH, "parameters": _INST,
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "The installation",
                                      **json_content("Installation")}, **errors(401, 403, 404)}},
        "patch": {
            "summary": "Upgrade, downgrade, reconfigure, enable or disable",
            "description": "Consent is needed again only when the target version's "
                           "capabilities grow. " + _WS_AUTH,
            "parameters": _INST, "security": [{"bearer": []}],
            "requestBody": {"required": True, **json_content("InstallationPatch")},
            "responses": {"200": {"description": "The installation after the change",
                                  **json_content("Installation")},
                          **errors(400, 401, 403, 404, 409, 422)},
        },
        "delete": {"summary": "Uninstall", "description": "Refused (409 required_by) while "
                   "another installed gear requires it. " + _WS_AUTH,
                   "parameters": _INST, "security": [{"bearer": []}],
                   "responses": {"204": {"description": "Uninstalled"},
                                 **errors(401, 403, 404, 409)}},
    },
})


def _merge_trust() -> None:
    """Vetting, signatures and quarantine are documented beside their endpoints."""
    SCHEMAS.update(trust.SCHEMAS)
    SCHEMAS["Version"]["properties"].update(trust.VERSION_PROPERTIES)
    PATHS.update(trust.PATHS)


_merge_trust()


#: What every path and query string value must match: no NUL character.
NO_NUL = "^[^\u0000]*$"


def _without_nul(param: dict[str, Any]) -> dict[str, Any]:
    schema = param.get("schema") or {}
    if schema.get("type") != "string" or "pattern" in schema or "enum" in schema:
        return param
    return {**param, "schema": {**schema, "pattern": NO_NUL}}


def _with_common_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation with the answers any request may meet.

    ``503``: the database or blob store is down or busy (``database_unavailable``,
    ``database_busy``, ``storage_unavailable``), with ``Retry-After``. ``401``:
    the bearer token sent is bad (every operation reads one when sent, even
    those anonymous callers may use). ``429`` (``rate_limited``, with
    ``Retry-After``): too many failed authentications with that token or from
    that address. The document itself is left alone.
    """
    out: dict[str, Any] = {}
    for path, ops in paths.items():
        out[path] = {}
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op or path.endswith("openapi.json"):
                out[path][method] = op
                continue
            responses = dict(op["responses"])
            if op.get("parameters"):
                # Path and query values are checked before anything else (no NUL, valid
                # Unicode): 400 invalid_parameter, with the parameter named.
                responses.setdefault("400", {"description": "A path or query value is "
                                             "refused (a NUL character, invalid Unicode)",
                                             **json_content("Error")})
                op = {**op, "parameters": [_without_nul(p) for p in op["parameters"]]}
            responses.setdefault("503", {"description": "A backing service is unavailable or "
                                         "busy; retry after Retry-After", **json_content("Error")})
            # Every operation reads a bearer token when one is sent: a bad one is 401 even
            # where anonymous callers are welcome, and repeated failures are 429.
            responses.setdefault("401", {"description": "The bearer token sent is invalid, "
                                         "expired or revoked", **json_content("Error")})
            responses.setdefault("429", {"description": "Too many failed authentications "
                                         "with this token or from this address; retry after "
                                         "Retry-After", **json_content("Error")})
            out[path][method] = {**op, "responses": responses}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gears registry API",
            "version": gears_sdk.__version__,
            "description": "Publish, review and download gears. Errors are JSON with a stable "
                           "code, a message for people and, for invalid input, every problem "
                           "with its path.",
        },
        "servers": [{"url": "/"}],
        "paths": _with_common_errors(PATHS),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API token (gears_…)"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return jsonify(document())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
