"""REST source: records read page by page from a JSON API, incrementally.

Each ``gear_read`` call fetches **one page** and returns ``has_more=True``
while there are more, so a long sync is many short calls, each well within
the per-call deadline, and the engine stores the cursor after every page: an
interrupted sync resumes at the page where it stopped.

The cursor is a small object::

    {"since": <newest updated_field of the last finished sync>,   # across syncs
     "newest": <newest value seen so far in this sync>,           # during a sync
     "next": <next page token, page number or offset>}            # during a sync

A sync ends on an empty page (or, with cursor pagination, when the response
names no next page); the cursor then keeps only ``since``, and the next sync
asks the API for records changed after it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gears_sdk import hookimpl
from gears_sdk.types import CheckResult, RecordBatch, StreamInfo

STREAM = "records"
_MISSING = object()


class SourceError(Exception):
    """The API's answer cannot be used; the message says what to fix."""


def dig(document, path, default=_MISSING):
    """The value at dotted ``path`` in ``document`` (``""`` is the document itself)."""
    for key in filter(None, path.split(".")):
        if not isinstance(document, dict) or key not in document:
            if default is _MISSING:
                raise SourceError(f"the response has no {path!r}")
            return default
        document = document[key]
    return document


def order_key(value):
    """Numbers as they are, ISO 8601 timestamps as epoch seconds, to find the newest."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def _headers(config, ctx):
    token = ctx.secrets.get("api_token")
    if not token:
        return {}
    scheme = config["auth_scheme"]
    return {config["auth_header"]: f"{scheme} {token}" if scheme else token}


def _get(config, ctx, params):
    response = ctx.http.get(config["url"], params=params, headers=_headers(config, ctx))
    if response.status in (401, 403):
        raise SourceError(f"the API refused the token (HTTP {response.status}); check api_token, "
                          "auth_header and auth_scheme")
    if not response.ok:
        raise SourceError(f"GET {config['url']} answered HTTP {response.status}: "
                          f"{response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise SourceError("the API did not answer with JSON") from None
    records = dig(body, config["records_path"])
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SourceError(f"{config['records_path'] or 'the response'} is not a list of objects "
                          "(check records_path)")
    return body, records


def _page_params(config, since, position):
    params = {config["limit_param"]: config["page_size"]}
    if since is not None and config["updated_field"]:
        params[config["since_param"]] = since
    style = config["pagination"]
    if style == "cursor" and position is not None:
        params[config["cursor_param"]] = position
    elif style == "page":
        params[config["page_param"]] = position or 1
    elif style == "offset":
        params[config["offset_param"]] = position or 0
    return params


def _next_position(config, body, records, position):
    """Where the next page starts, or None when this page was the last."""
    if not records:
        return None
    style = config["pagination"]
    if style == "page":
        return (position or 1) + 1
    if style == "offset":
        return (position or 0) + len(records)
    token = dig(body, config["next_cursor_path"], default=None)
    # a server answering the same cursor again would loop forever
    return None if token in (None, "") or token == position else token


def _shape(record, kind, id_field):
    key = "id" if kind == "items" else "user_id"
    return {**record, key: str(record[id_field])}


@hookimpl
def gear_check(config, ctx):
    """Fetch one record to test the URL, the token and ``records_path``."""
    try:
        _get(config, ctx, {config["limit_param"]: 1})
    except PermissionError:
        return CheckResult(ok=False, message=f"this gear may not reach {config['url']}: its host "
                           "is not in the gear's network permission (see the README)")
    except (ConnectionError, TimeoutError) as exc:
        return CheckResult(ok=False, message=f"could not reach the API: {exc}")
    except SourceError as exc:
        return CheckResult(ok=False, message=str(exc))
    return CheckResult(ok=True, message="the API answered with records")


@hookimpl
def gear_streams(config):
    """One stream, whose records become what ``stream_kind`` says."""
    return [StreamInfo(name=STREAM, kind=config["stream_kind"],
                       description=f"records from {config['url']}",
                       incremental=bool(config["updated_field"]))]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    """One page of records; ``has_more`` until the last page."""
    if stream != STREAM:
        raise SourceError(f"unknown stream {stream!r}; this gear offers {STREAM!r}")
    cursor = cursor if isinstance(cursor, dict) else {}
    since, position = cursor.get("since"), cursor.get("next")
    newest = cursor.get("newest", since)
    body, page = _get(config, ctx, _page_params(config, since, position))

    id_field, updated_field = config["id_field"], config["updated_field"]
    records, skipped = [], 0
    for record in page:
        if record.get(id_field) in (None, ""):
            skipped += 1
            continue
        records.append(_shape(record, config["stream_kind"], id_field))
        updated = record.get(updated_field) if updated_field else None
        if updated is None:
            continue
        try:
            if newest is None or order_key(updated) > order_key(newest):
                newest = updated
        except (TypeError, ValueError):
            ctx.log.warning("%s=%r is not a timestamp or number", updated_field, updated)
    if skipped:
        ctx.log.warning("skipped %d record(s) without %r", skipped, id_field)

    following = _next_position(config, body, page, position)
    if following is None:
        return RecordBatch(records=records, cursor={"since": newest}, has_more=False)
    return RecordBatch(records=records, has_more=True,
                       cursor={"since": since, "newest": newest, "next": following})
