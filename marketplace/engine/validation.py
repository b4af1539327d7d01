"""Checks of what clients send the engine, every problem with its JSON path.

Whole requests are accepted or refused: a batch with one bad event is
refused with the list of every problem (``$.events[3].type``), so a client
fixes its payload once instead of discovering problems one by one and never
has to work out which half of a batch was stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gears_sdk.errors import ProblemDetail, problem
from gears_sdk.patterns import compile as linear
from gears_sdk.permissions import CATALOG_FIELDS, EVENT_TYPES
from gears_sdk.values import finite_or_none
from marketplace.db import utcnow
from marketplace.engine_service import NAME_RULE as NAME_RULE
from marketplace.errors import MarketplaceError

MAX_EVENTS_PER_BATCH = 1000
MAX_ITEMS_PER_BATCH = 1000
MAX_PROPERTIES = 100
MAX_USER_ID = 200
MAX_EVENT_ID = 64
#: Clocks drift; events further in the future than this are refused as mistakes.
FUTURE_TOLERANCE = timedelta(days=1)
#: RE2: ``$`` only at the very end, so ``"buyers\n"`` is not a second ``buyers``.
NAME_RE = linear(r"[a-z0-9][a-z0-9_-]{0,63}")
# NAME_RULE (the API's vocabulary, in marketplace.engine_service) says it in words.


def invalid(message: str, problems: list[ProblemDetail], code: str = "invalid") -> MarketplaceError:
    """422 with ``problems`` as the error's details."""
    return MarketplaceError(422, code, message, problems)


def check_name(value: Any, path: str, problems: list[ProblemDetail]) -> None:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        problems.append(problem(path, f"a name is {NAME_RULE}"))


def _str(value: Any, path: str, max_len: int, problems: list[ProblemDetail], *,
         required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        problems.append(problem(path, f"must be a non-empty string of at most {max_len} "
                                "characters"))


#: The earliest event time accepted; the latest is a day after now.
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as aware UTC (naive means UTC); ``None`` if unparsable or
    before :data:`MIN_TIMESTAMP` (``9999-12-31T23:59:59-01:00`` overflows when converted
    to UTC: refused, not a 500)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        ts = datetime.fromisoformat(value)
        ts = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return ts if ts >= MIN_TIMESTAMP else None


@dataclass
class NewEvent:
    """A validated event, ready to store and hand to gears."""

    event_id: str
    user_id: str
    type: str
    name: str | None
    properties: dict[str, Any]
    timestamp: datetime


_EVENT_KEYS = {"id", "user_id", "type", "name", "properties", "timestamp"}


def check_event(raw: Any, path: str, problems: list[ProblemDetail], now: datetime) -> NewEvent | None:
    """One event, or ``None`` after appending its problems."""
    if not isinstance(raw, dict):
        problems.append(problem(path, "an event is an object"))
        return None
    before = len(problems)
    for key in sorted(set(raw) - _EVENT_KEYS):
        problems.append(problem(f"{path}.{key}", f"unknown field {key!r} (put custom data "
                                "in 'properties')"))
    _str(raw.get("user_id"), f"{path}.user_id", MAX_USER_ID, problems)
    etype = raw.get("type")
    if etype not in EVENT_TYPES:
        problems.append(problem(f"{path}.type", f"must be one of {', '.join(EVENT_TYPES)}"))
    name = raw.get("name")
    if etype == "custom":
        _str(name, f"{path}.name", 100, problems)
    elif name is not None:
        problems.append(problem(f"{path}.name", "only custom events have a name"))
    props = raw.get("properties", {})
    if not isinstance(props, dict):
        problems.append(problem(f"{path}.properties", "must be an object"))
    elif len(props) > MAX_PROPERTIES:
        problems.append(problem(f"{path}.properties", f"at most {MAX_PROPERTIES} properties"))
    _str(raw.get("id"), f"{path}.id", MAX_EVENT_ID, problems, required=False)
    ts = now
    if "timestamp" in raw:
        parsed = parse_timestamp(raw["timestamp"])
        if parsed is None:
            problems.append(problem(f"{path}.timestamp", "must be an ISO 8601 timestamp after "
                                    "1970 such as 2024-03-10T12:00:00Z"))
        elif parsed > now + FUTURE_TOLERANCE:
            problems.append(problem(f"{path}.timestamp", "is more than a day in the future",
                                    "future_timestamp"))
        else:
            ts = parsed
    if len(problems) > before:
        return None
    return NewEvent(event_id=raw.get("id") or uuid.uuid4().hex, user_id=raw["user_id"],
                    type=str(etype), name=name, properties=props, timestamp=ts)


def check_event_batch(body: Any) -> list[NewEvent]:
    """The events of ``{"events": [...]}``; 422 listing every problem otherwise."""
    problems: list[ProblemDetail] = []
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not events:
        raise invalid("send {\"events\": [...]} with at least one event",
                      [problem("$.events", "a non-empty list of events")], "invalid_batch")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise invalid(f"a batch holds at most {MAX_EVENTS_PER_BATCH} events; split it",
                      [problem("$.events", f"{len(events)} events", "too_many")], "batch_too_large")
    now = utcnow()
    out = [check_event(raw, f"$.events[{i}]", problems, now) for i, raw in enumerate(events)]
    seen: set[str] = set()
    for i, (raw, ev) in enumerate(zip(events, out, strict=True)):
        if ev is not None and isinstance(raw, dict) and raw.get("id"):
            if ev.event_id in seen:
                problems.append(problem(f"$.events[{i}].id", "the same id twice in one batch",
                                        "duplicate"))
            seen.add(ev.event_id)
    if problems:
        raise invalid(f"the batch has {len(problems)} problem(s); nothing was stored",
                      problems, "invalid_batch")
    return [e for e in out if e is not None]


ITEM_FIELDS = CATALOG_FIELDS
_ITEM_KEYS = ITEM_FIELDS


def check_item(raw: Any, path: str, problems: list[ProblemDetail]) -> dict[str, Any] | None:
    """One catalog item as column values, or ``None`` after appending its problems."""
    if not isinstance(raw, dict):
        problems.append(problem(path, "an item is an object"))
        return None
    before = len(problems)
    for key in sorted(set(raw) - _ITEM_KEYS):
        problems.append(problem(f"{path}.{key}", f"unknown field {key!r} (put custom data "
                                "in 'attributes')"))
    _str(raw.get("id"), f"{path}.id", 200, problems)
    for key, limit in (("title", 300), ("category", 100), ("url", 2000), ("image_url", 2000)):
        if raw.get(key) is not None and (not isinstance(raw[key], str) or len(raw[key]) > limit):
            problems.append(problem(f"{path}.{key}", f"a string of at most {limit} characters"))
    price = raw.get("price")
    if price is not None and finite_or_none(price) is None:
        problems.append(problem(f"{path}.price", "a finite number"))
    if not isinstance(raw.get("attributes", {}), dict):
        problems.append(problem(f"{path}.attributes", "an object"))
    if not isinstance(raw.get("active", True), bool):
        problems.append(problem(f"{path}.active", "true or false"))
    if len(problems) > before:
        return None
    return {"item_id": raw["id"], "title": raw.get("title") or "",
            "category": raw.get("category"), "price": price, "url": raw.get("url"),
            "image_url": raw.get("image_url"), "attributes": raw.get("attributes") or {},
            "active": raw.get("active", True)}


def check_item_batch(body: Any) -> list[dict[str, Any]]:
    """The items of ``{"items": [...]}``; 422 listing every problem otherwise."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise invalid("send {\"items\": [...]} with at least one item",
                      [problem("$.items", "a non-empty list of items")], "invalid_batch")
    if len(items) > MAX_ITEMS_PER_BATCH:
        raise invalid(f"a batch holds at most {MAX_ITEMS_PER_BATCH} items; split it",
                      [problem("$.items", f"{len(items)} items", "too_many")], "batch_too_large")
    problems: list[ProblemDetail] = []
    out = [check_item(raw, f"$.items[{i}]", problems) for i, raw in enumerate(items)]
    if problems:
        raise invalid(f"the batch has {len(problems)} problem(s); nothing was stored",
                      problems, "invalid_batch")
    # the last occurrence of an id wins, as if the items were upserted one by one
    return list({i["item_id"]: i for i in out if i is not None}.values())


def check_decide_request(body: Any) -> tuple[str, str, dict[str, Any]]:
    """``(user_id, placement, context)`` of ``{"user_id", "placement", "context"?}``;
    422 listing every problem otherwise."""
    problems: list[ProblemDetail] = []
    data = body
    if not isinstance(data, dict):
        data = {}
        problems.append(problem("$", "an object"))
    user = data.get("user_id")
    if not isinstance(user, str) or not user or len(user) > 200:
        problems.append(problem("$.user_id", "a non-empty string of at most 200 characters"))
    if not isinstance(data.get("placement"), str) or not data.get("placement"):
        problems.append(problem("$.placement", "the placement's name"))
    context = data.get("context", {})
    if not isinstance(context, dict):
        problems.append(problem("$.context", "an object"))
    if problems:
        raise invalid("the decision request is invalid", problems, "invalid_request")
    return str(user), data["placement"], context or {}
