"""OpenAPI entries for vetting, signatures, quarantine and the kill list.

Kept beside the endpoints they describe; :mod:`marketplace.openapi` merges
:data:`SCHEMAS`, :data:`VERSION_PROPERTIES` and :data:`PATHS` into the document.
"""

from __future__ import annotations

from typing import Any

from marketplace.openapi_parts import BOOL, DATE, INT, STR, errors, json_content, nullable, ref, state_change

SEVERITY = {"enum": ["info", "low", "medium", "high", "critical"]}

SCHEMAS: dict[str, Any] = {
    "Finding": {
        "type": "object",
        "required": ["code", "severity", "message"],
        "properties": {
            "code": {**STR, "description": "stable; see the admin guide"},
            "severity": SEVERITY,
            "file": nullable(STR), "line": nullable(INT), "path": nullable(STR),
            "message": STR, "check": nullable(STR),
        },
    },
    "Keys": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {
            "type": "object",
            "required": ["key_id", "algorithm", "public_key"],
            "properties": {"key_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                           "algorithm": {"const": "ed25519"},
                           "public_key": {**STR, "description": "raw 32-byte key, base64"},
                           "current": BOOL},
        }}},
    },
    "KillList": {
        "type": "object",
        "required": ["issued_at", "entries", "signature", "key_id"],
        "properties": {
            "issued_at": DATE,
            "entries": {"type": "array", "items": {
                "type": "object", "required": ["name", "version", "sha256", "reason"],
                "properties": {"name": STR, "version": STR, "reason": STR,
                               "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            }},
            "signature": {**STR, "description": "Ed25519 over the canonical JSON of "
                                                "{issued_at, entries}, base64"},
            "key_id": STR,
        },
    },
}

#: Added to the ``Version`` schema.
VERSION_PROPERTIES: dict[str, Any] = {
    "signature": {**nullable(STR), "description": "Ed25519 signature (base64) over the "
                  "canonical JSON of {name, version, sha256, files}; set on approval"},
    "key_id": nullable(STR),
    "files": {**nullable({"type": "object", "additionalProperties": STR}),
              "description": "signed per-file sha256 hashes"},
    "vetting": {**nullable({"type": "object", "required": ["state", "finished_at"],
                             "properties": {"state": {"enum": ["queued", "running", "done",
                                                               "error"]},
                                            "started_at": nullable(DATE),
                                            "finished_at": nullable(DATE)}}),
                "description": "publisher members and admins only"},
    "findings": {"type": "array", "items": ref("Finding"),
                 "description": "publisher members and admins only"},
}

PATHS: dict[str, Any] = {
    "/api/v1/keys": {
        "get": {"summary": "The registry's public signing keys",
                "description": "Current and retired keys, so every signature made before a "
                               "rotation still verifies.",
                "responses": {"200": {"description": "Keys", **json_content("Keys")}}}
    },
    "/api/v1/killlist": {
        "get": {"summary": "The signed kill list",
                "description": "Every quarantined version. Runtimes poll it, verify the "
                               "signature and stop matching workers.",
                "responses": {"200": {"description": "The list", **json_content("KillList")}}}
    },
    "/api/v1/admin/gears/{publisher}/{name}/{version}/quarantine": state_change(
        "Quarantine a version", "Admin only; a reason is required. Blocks downloads and, "
        "through the kill list, loading everywhere."),
    "/api/v1/admin/gears/{publisher}/{name}/{version}/unquarantine": state_change(
        "Release a version from quarantine", "Admin only; a reason is required."),
    "/api/v1/admin/gears/{publisher}/{name}/{version}/revet": {
        "post": {**state_change("Run the vetting checks again", "Admin only.")["post"],
                 "responses": {"202": {"description": "Queued", **json_content("Version")},
                               **errors(400, 401, 403, 404, 422)}},
    },
}
