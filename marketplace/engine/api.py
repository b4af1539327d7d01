"""``/engine/v1/workspaces/<ws>``: the engine's JSON API.

Every route needs a token allowing ``workspace:<ws>`` (its user still a
member of the workspace) or an admin token: 401 without a token, 403 with
another workspace's. The node token (``ENGINE_NODE_TOKEN``) is also accepted:
it is how the other processes of this installation (web servers answering
their pages, the scheduler) call an engine node, having checked their own
users first. The views only translate HTTP to the plain functions in the
engine's modules, which is also what the in-process engine service
(:mod:`marketplace.engine.service`) calls.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from gears_sdk.values import ValueLimits
from marketplace.auth import require_scope
from marketplace.db import get_session
from marketplace.engine import connectors, setup
from marketplace.engine.audience import iter_members
from marketplace.engine.decisions import decide as run_decision
from marketplace.engine.ingest import ingest
from marketplace.engine.manager import EngineManager
from marketplace.engine.models import Decision, SyncRun, SyncSchedule
from marketplace.engine.queries import (
    campaign_list,
    catalog_page,
    decision_json,
    profile_view,
    recent_profiles,
    segment_list,
)
from marketplace.engine.scheduler import schedule_json, set_schedule
from marketplace.engine.validation import (
    check_decide_request,
    check_event_batch,
    check_item_batch,
    invalid,
    problem,
)
from marketplace.engine_service import token_matches
from marketplace.errors import MarketplaceError
from marketplace.http_input import json_body
from marketplace.models import Workspace

bp = Blueprint("engine_api", __name__, url_prefix="/engine/v1/workspaces/<ws>")

MAX_BODY_BYTES = 8 * 1024 * 1024
#: A body meets the value contract (finite numbers, bounded depth, valid Unicode...).
BODY_LIMITS = ValueLimits(max_bytes=MAX_BODY_BYTES, max_nodes=2_000_000)


def engine() -> EngineManager:
    manager: EngineManager = current_app.extensions["gears_engine"]
    return manager


def node_caller() -> bool:
    """Whether the request carries the node token: another process of this installation."""
    return token_matches(current_app.config["ENGINE_NODE_TOKEN"],
                         request.headers.get("Authorization"))


def workspace(ws: str) -> Workspace:
    """The workspace, once the token is allowed to act in it (401/403/404)."""
    if not node_caller():
        require_scope(f"workspace:{ws}")
    row = get_session().scalar(select(Workspace).where(Workspace.name == ws))
    if row is None:
        raise MarketplaceError(404, "workspace_not_found", f"there is no workspace {ws!r}")
    return row


def body(*, optional: bool = False) -> Any:
    """The JSON body under the one input contract (:mod:`marketplace.http_input`), at
    most :data:`MAX_BODY_BYTES` counted as it arrives; ``{}`` when ``optional`` and empty."""
    data = json_body(max_bytes=MAX_BODY_BYTES, limits=BODY_LIMITS, optional=optional)
    return {} if data is None else data


def _int_arg(name: str, default: int, hi: int) -> int:
    raw = request.args.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        value = -1
    if not 1 <= value <= hi:
        raise invalid(f"'{name}' must be a whole number from 1 to {hi}",
                      [problem(name, f"from 1 to {hi}", "range")], "invalid_parameter")
    return value


def _flag_arg(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise invalid(f"'{name}' is true or false", [problem(name, "true or false", "type")],
                      "invalid_parameter")
    return raw in ("true", "1")


def _done(payload: Any, status: int = 200) -> tuple[Response, int]:
    get_session().commit()
    engine().flush_failures()
    return jsonify(payload), status


# -- events, profiles, catalog ------------------------------------------------------------


@bp.post("/events")
def post_events(ws: str) -> tuple[Response, int]:
    w = workspace(ws)
    events = check_event_batch(body())
    return _done(ingest(engine(), get_session(), w, events).to_dict())


@bp.get("/profiles")
def list_profiles(ws: str) -> Response:
    w = workspace(ws)
    return jsonify({"profiles": recent_profiles(get_session(), w, _int_arg("limit", 20, 500))})


@bp.put("/profiles")
def put_profiles(ws: str) -> tuple[Response, int]:
    w = workspace(ws)
    data = body()
    records = data.get("profiles") if isinstance(data, dict) else None
    return _done({"imported": connectors.import_profiles(get_session(), w.id, records)})


@bp.get("/profiles/<user_id>")
def get_profile(ws: str, user_id: str) -> Response:
    return jsonify(profile_view(get_session(), workspace(ws), user_id))


@bp.put("/catalog/items")
def put_items(ws: str) -> tuple[Response, int]:
    w = workspace(ws)
    items = check_item_batch(body())
    return _done({"upserted": connectors.upsert_items(get_session(), w.id, items)})


@bp.get("/catalog/items")
def get_items(ws: str) -> Response:
    w = workspace(ws)
    return jsonify(catalog_page(get_session(), w, request.args.get("category"),
                                _int_arg("limit", 50, 500)))


# -- decisions ----------------------------------------------------------------------------


@bp.post("/decide")
def post_decide(ws: str) -> tuple[Response, int]:
    w = workspace(ws)
    user, placement, context = check_decide_request(body())
    return _done(run_decision(engine(), get_session(), w, user, placement, context))


@bp.get("/decisions")
def list_decisions(ws: str) -> Response:
    w = workspace(ws)
    rows = get_session().scalars(select(Decision).where(Decision.workspace_id == w.id)
                                 .order_by(Decision.id.desc()).limit(_int_arg("limit", 50, 500)))
    return jsonify({"decisions": [decision_json(r) for r in rows]})


# -- connectors ---------------------------------------------------------------------------


@bp.post("/connectors/<installation>/check")
def connector_check(ws: str, installation: str) -> tuple[Response, int]:
    w = workspace(ws)
    return _done(connectors.check(engine(), get_session(), w, installation))


@bp.post("/connectors/<installation>/sync")
def connector_sync(ws: str, installation: str) -> tuple[Response, int]:
    w = workspace(ws)
    data = body(optional=True)
    streams = data.get("streams") if isinstance(data, dict) else None
    if streams is not None and (not isinstance(streams, list)
                                or not all(isinstance(s, str) for s in streams)):
        raise invalid("'streams' lists stream names", [problem("$.streams", "a list of names")])
    # a run the connector failed is still a 200: the run says why, and a gear can never
    # make the engine answer 5xx
    return _done(connectors.sync(engine(), get_session(), w, installation, streams=streams))


@bp.get("/connectors/<installation>/runs")
def connector_runs(ws: str, installation: str) -> Response:
    w = workspace(ws)
    rows = get_session().scalars(select(SyncRun).where(
        SyncRun.workspace_id == w.id, SyncRun.installation_id == installation)
        .order_by(SyncRun.id.desc()).limit(_int_arg("limit", 20, 200)))
    return jsonify({"runs": [connectors.run_json(r) for r in rows]})


@bp.get("/connectors/<installation>/schedule")
def get_schedule(ws: str, installation: str) -> Response:
    w = workspace(ws)
    connectors.connector(engine(), get_session(), w, installation)
    return jsonify(schedule_json(get_session().get(SyncSchedule, installation), installation))


@bp.put("/connectors/<installation>/schedule")
def put_schedule(ws: str, installation: str) -> tuple[Response, int]:
    w = workspace(ws)
    row = set_schedule(engine(), get_session(), w, installation, body())
    return _done(schedule_json(row, installation))


@bp.post("/segments/<segment>/export/<installation>")
def export_segment(ws: str, segment: str, installation: str) -> tuple[Response, int]:
    w = workspace(ws)
    data = body(optional=True)
    stream = data.get("stream") if isinstance(data, dict) else None
    if stream is not None and (not isinstance(stream, str) or not stream):
        raise invalid("'stream' names the destination stream", [problem("$.stream", "a name")])
    return _done(connectors.export(engine(), get_session(), w, segment, installation,
                                   stream=stream))


# -- segments and campaigns ---------------------------------------------------------------


@bp.get("/segments")
def list_segments(ws: str) -> Response:
    w = workspace(ws)
    counts = _flag_arg("counts")
    return jsonify({"segments": segment_list(get_session(), w, counts=counts)})


@bp.get("/segments/<name>")
def get_segment(ws: str, name: str) -> Response:
    return jsonify(setup.segment_json(setup.get_segment(get_session(), workspace(ws), name)))


@bp.put("/segments/<name>")
def put_segment(ws: str, name: str) -> tuple[Response, int]:
    row = setup.put_segment(get_session(), workspace(ws), name, body())
    return _done(setup.segment_json(row))


@bp.delete("/segments/<name>")
def delete_segment(ws: str, name: str) -> tuple[Response, int]:
    setup.delete_segment(get_session(), workspace(ws), name)
    return _done({"deleted": name})


@bp.get("/segments/<name>/members")
def segment_members(ws: str, name: str) -> Response:
    w = workspace(ws)
    seg = setup.get_segment(get_session(), w, name)
    limit = _int_arg("limit", 100, 1000)
    members = []
    for doc in iter_members(get_session(), w.id, seg.rule):
        members.append(doc)
        if len(members) >= limit:
            break
    return jsonify({"segment": name, "members": members})


@bp.get("/campaigns")
def list_campaigns(ws: str) -> Response:
    return jsonify({"campaigns": campaign_list(get_session(), workspace(ws))})


@bp.get("/campaigns/<name>")
def get_campaign(ws: str, name: str) -> Response:
    return jsonify(setup.campaign_json(setup.get_campaign(get_session(), workspace(ws), name)))


@bp.put("/campaigns/<name>")
def put_campaign(ws: str, name: str) -> tuple[Response, int]:
    row = setup.put_campaign(get_session(), workspace(ws), name, body())
    return _done(setup.campaign_json(row))


@bp.delete("/campaigns/<name>")
def delete_campaign(ws: str, name: str) -> tuple[Response, int]:
    setup.delete_campaign(get_session(), workspace(ws), name)
    return _done({"deleted": name})
