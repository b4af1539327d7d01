"""The engine API's OpenAPI 3.1 document, served at ``/engine/v1/openapi.json``.

Kept apart from the registry's document because the engine is deployed and
scaled on its own; a test checks that every ``/engine/v1`` route is here and
that real responses match these schemas.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

import gears_sdk
from marketplace.openapi_parts import BOOL, INT, PROBLEM, STR, ref

bp = Blueprint("engine_openapi", __name__, url_prefix="/engine/v1")

NUM = {"type": "number"}
OBJ = {"type": "object"}
NULLSTR = {"type": ["string", "null"]}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error=_obj(["code", "message", "details"], code=STR, message=STR,
                                        details={"type": "array", "items": ref("Problem")},
                                        current=OBJ)),
    "Problem": PROBLEM,
    "Event": _obj(["user_id", "type"], id=STR, user_id=STR,
                  type={"enum": ["view", "click", "purchase", "custom"]}, name=STR,
                  properties=OBJ, timestamp={"type": "string", "format": "date-time"}),
    "EventBatch": _obj(["events"], events={"type": "array", "items": ref("Event"),
                                           "minItems": 1, "maxItems": 1000}),
    "IngestResult": _obj(
        ["accepted", "duplicates", "patches_applied", "gear_errors", "took_ms"],
        accepted=INT, duplicates=INT, profiles_created=INT, patches_applied=INT, took_ms=NUM,
        gear_errors={"type": "object", "additionalProperties": _obj(
            ["gear", "count"], gear=STR, count=INT, codes=OBJ, last_error=NULLSTR)}),
    "Profile": _obj(["user_id", "attributes", "traits"], user_id=STR, attributes=OBJ,
                    traits=OBJ, segments={"type": "array", "items": STR},
                    events={"type": "array", "items": ref("Event")}, created_at=STR,
                    updated_at=STR),
    "Item": _obj(["id"], id=STR, title=STR, category=NULLSTR, price={"type": ["number", "null"]},
                 url=NULLSTR, image_url=NULLSTR, attributes=OBJ, active=BOOL),
    "ItemBatch": _obj(["items"], items={"type": "array", "items": ref("Item"), "minItems": 1,
                                        "maxItems": 1000}),
    "DecideRequest": _obj(["user_id", "placement"], user_id=STR, placement=STR, context=OBJ),
    "GearOutcome": _obj(["installation", "gear", "hook", "ok"], installation=STR, gear=STR,
                        hook=STR, ok=BOOL, error=NULLSTR, message=NULLSTR),
    "Decision": _obj(["campaign", "experience", "content", "gears", "took_ms", "fallback"],
                     campaign=STR, experience=NULLSTR, fallback=BOOL, took_ms=NUM,
                     content=_obj([], html=NULLSTR, data={"type": ["object", "null"]}),
                     gears={"type": "array", "items": ref("GearOutcome")}),
    "DecisionLog": _obj(["decisions"], decisions={"type": "array", "items": _obj(
        ["at", "user_id", "placement"], at=STR, user_id=STR, placement=STR,
        campaign=NULLSTR, experience=NULLSTR, fallback=BOOL, took_ms=NUM,
        gears={"type": "array", "items": ref("GearOutcome")})}),
    "Segment": _obj(["name", "rule"], name=STR, title=STR,
                    rule={"type": "object", "description": "see the segment rule language"},
                    created_at=STR, updated_at=STR,
                    members={"type": ["integer", "null"],
                             "description": "with `counts=true` only"}),
    "ProfileRecord": _obj(["user_id"], user_id=STR, attributes=OBJ, traits=OBJ),
    "ProfileImport": _obj(["profiles"], profiles={"type": "array", "items": ref("ProfileRecord"),
                                                  "minItems": 1, "maxItems": 1000}),
    "Campaign": _obj(["name", "placement", "experiences"], name=STR, title=STR, placement=STR,
                     priority=INT, active=BOOL, created_at=STR, updated_at=STR,
                     experiences={"type": "array", "items": _obj(
                         ["name", "installation"], name=STR, segment=NULLSTR,
                         installation=STR, content=OBJ)},
                     fallback=_obj([], html=NULLSTR, data={"type": ["object", "null"]})),
    "CheckResult": _obj(["ok", "message"], ok=BOOL, message=STR, details=OBJ),
    "SyncRun": _obj(["id", "installation", "status", "streams"], id=INT, installation=STR,
                    trigger=STR, status={"enum": ["running", "succeeded", "failed"]},
                    started_at=STR, finished_at=NULLSTR, streams=OBJ, error=NULLSTR),
    "Schedule": _obj(["installation", "interval_minutes"], installation=STR,
                     interval_minutes={"type": ["integer", "null"]}, next_run_at=NULLSTR,
                     last_run_at=NULLSTR),
    "ExportResult": _obj(["segment", "installation", "members", "written", "failed", "ok"],
                         segment=STR, installation=STR, stream=STR, members=INT, written=INT,
                         failed=INT, batches=INT, ok=BOOL,
                         errors={"type": "array", "items": STR}),
    "Deleted": _obj(["deleted"], deleted=STR),
}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(schema)}}}


def _op(summary: str, response: str, *errors: int, body: str | None = None,
        status: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}],
                          "responses": {status: {"description": "OK", **_json(response)}}}
    # 429: too many failed token authentications; 503: the database is down or busy.
    for code in (401, 403, 404, 429, 503, *errors):
        op["responses"][str(code)] = {"description": "error", **_json("Error")}
    if body:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


def _list(name: str, key: str) -> dict[str, Any]:
    return _obj([key], **{key: {"type": "array", "items": ref(name)}})


def _params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": STR} for n in names]


W = "/engine/v1/workspaces/{ws}"


def paths() -> dict[str, Any]:
    p: dict[str, Any] = {
        f"{W}/events": {"post": _op("Ingest a batch of events through the extensions",
                                    "IngestResult", 400, 413, 422, body="EventBatch")},
        f"{W}/profiles": {
            "get": _op("The profiles changed last, newest first (`limit`, 1-500)",
                       "RecentProfiles", 422),
            "put": _op("Import profile records (attributes and traits merged in; all or "
                       "nothing)", "Imported", 400, 413, 422, body="ProfileImport")},
        f"{W}/profiles/{{user_id}}": {"get": _op("A profile, its segments and latest events",
                                                 "Profile")},
        f"{W}/catalog/items": {
            "put": _op("Upsert catalog items", "Upserted", 400, 422, body="ItemBatch"),
            "get": _op("List catalog items", "ItemList", 422)},
        f"{W}/decide": {"post": _op("Decide what to show a user at a placement", "Decision",
                                    400, 422, body="DecideRequest")},
        f"{W}/decisions": {"get": _op("The latest decisions", "DecisionLog", 422)},
        f"{W}/connectors/{{installation}}/check": {
            "post": _op("Test a connector's connection", "CheckResult", 409)},
        f"{W}/connectors/{{installation}}/sync": {
            "post": _op("Sync a connector's streams now (a failed run is a 200 whose status "
                        "says failed)", "SyncRun", 409, 422)},
        f"{W}/connectors/{{installation}}/runs": {
            "get": _op("A connector's latest sync runs", "SyncRunList", 409, 422)},
        f"{W}/connectors/{{installation}}/schedule": {
            "get": _op("A connector's sync schedule", "Schedule", 409),
            "put": _op("Set or clear a connector's sync interval", "Schedule", 400, 409, 422,
                       body="ScheduleRequest")},
        f"{W}/segments/{{segment}}/export/{{installation}}": {
            "post": _op("Export a segment's members through a connector (ok: false when it "
                        "failed)", "ExportResult", 409, 422)},
        f"{W}/segments": {"get": _op("List segments by name; `counts=true` adds each one's "
                                     "`members` (null above 5,000 profiles)", "SegmentList",
                                     422)},
        f"{W}/segments/{{name}}": {
            "get": _op("A segment", "Segment"),
            "put": _op("Create or replace a segment", "Segment", 400, 409, 422,
                       body="Segment"),
            "delete": _op("Delete a segment", "Deleted", 409)},
        f"{W}/segments/{{name}}/members": {"get": _op("A segment's members", "Members", 422)},
        f"{W}/campaigns": {"get": _op("List campaigns by placement, then in the order "
                                      "decisions weigh them: priority (highest first), then "
                                      "name", "CampaignList")},
        f"{W}/campaigns/{{name}}": {
            "get": _op("A campaign", "Campaign"),
            "put": _op("Create or replace a campaign", "Campaign", 400, 409, 422,
                       body="Campaign"),
            "delete": _op("Delete a campaign", "Deleted")},
        "/engine/v1/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": OBJ}}}}}},
    }
    for path, ops in p.items():
        names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        for op in ops.values():
            if names:
                op["parameters"] = _params(*names)
    return p


def document() -> dict[str, Any]:
    schemas = {**SCHEMAS,
               "Upserted": _obj(["upserted"], upserted=INT),
               "Imported": _obj(["imported"], imported=INT),
               "RecentProfiles": _obj(["profiles"], profiles={"type": "array", "items": _obj(
                   ["user_id", "updated_at"], user_id=STR, updated_at=STR)}),
               "ItemList": _list("Item", "items"),
               "SegmentList": _list("Segment", "segments"),
               "CampaignList": _list("Campaign", "campaigns"),
               "SyncRunList": _list("SyncRun", "runs"),
               "Members": _obj(["segment", "members"], segment=STR,
                               members={"type": "array", "items": OBJ}),
               "ScheduleRequest": _obj(["interval_minutes"],
                                       interval_minutes={"type": ["integer", "null"]})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gears engine API", "version": gears_sdk.__version__,
                 "description": "Events, profiles, catalog, segments, campaigns, decisions "
                                "and connectors of one workspace. Authorize with a token "
                                "holding workspace:<ws> (or admin)."},
        "paths": paths(),
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
