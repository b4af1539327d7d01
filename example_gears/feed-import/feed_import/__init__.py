"""Feed import: a CSV or JSON feed fetched over HTTPS, imported incrementally.

Every sync downloads the whole feed (feeds are files, they have no paging),
keeps only the rows whose ``updated_field`` is newer than the cursor and
returns them in one batch. The new cursor is the newest ``updated_field``
seen, so the next sync skips everything already imported. The engine stores
the cursor only after the batch is applied: a failed sync imports the same
rows again, never loses any.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from gears_sdk import hookimpl
from gears_sdk.types import CheckResult, RecordBatch, StreamInfo

STREAM = "feed"
#: Malformed rows named in an error message; the rest are counted.
MAX_REPORTED = 5


class FeedError(Exception):
    """The feed cannot be imported; the message says what to fix."""


def _headers(config, ctx):
    value = ctx.secrets.get("auth_value")
    return {config["auth_header"]: value} if value else {}


def _fetch(config, ctx):
    url = config["feed_url"]
    response = ctx.http.get(url, headers=_headers(config, ctx))
    if response.status in (401, 403):
        raise FeedError(f"the feed refused the credentials (HTTP {response.status}); "
                        "check the auth header value")
    if not response.ok:
        raise FeedError(f"fetching {url} failed with HTTP {response.status}")
    return response.text


def _dig(document, path):
    for key in filter(None, path.split(".")):
        if not isinstance(document, dict) or key not in document:
            raise FeedError(f"the JSON feed has no {path!r} (records_path)")
        document = document[key]
    return document


def parse_feed(text, fmt, records_path=""):
    """The feed's rows as dicts, in order; raises FeedError for an unreadable feed."""
    if fmt == "json":
        try:
            rows = _dig(json.loads(text), records_path) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise FeedError(f"the feed is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise FeedError("the JSON feed must be an array of objects (set records_path "
                            "when the array is nested)")
        return rows
    reader = csv.DictReader(io.StringIO(text), restkey="\0extra")
    rows = []
    for row in reader:
        if "\0extra" in row:
            raise FeedError(f"CSV line {reader.line_num} has more fields than the header")
        rows.append(row)
    return rows


def order_key(value):
    """A number to compare ``updated_field`` values: numbers as they are, ISO 8601 as epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("not a timestamp")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def shape(row, kind, id_field, record_id):
    """A feed row in the shape the engine expects for ``kind``."""
    rest = {k: v for k, v in row.items() if k != id_field}
    if kind == "items":
        return {**rest, "id": record_id}
    if kind == "profiles":
        return {"user_id": record_id, "attributes": rest}
    properties = {k: v for k, v in rest.items() if k not in ("type", "timestamp")}
    return {"user_id": record_id, "type": row.get("type"), "timestamp": row.get("timestamp"),
            "properties": properties}


@hookimpl
def gear_check(config, ctx):
    """Ask for the feed's headers (HEAD, or GET where HEAD is not allowed)."""
    url = config["feed_url"]
    try:
        response = ctx.http.request("HEAD", url, headers=_headers(config, ctx))
        if response.status in (405, 501):
            response = ctx.http.get(url, headers=_headers(config, ctx))
    except PermissionError:
        return CheckResult(ok=False, message=f"this gear may not reach {url}: its host is not in "
                           "the gear's network permission (see the README)")
    except (ConnectionError, TimeoutError) as exc:
        return CheckResult(ok=False, message=f"could not reach the feed: {exc}")
    if response.status in (401, 403):
        return CheckResult(ok=False, message=f"the feed refused the credentials (HTTP "
                           f"{response.status}); check the auth header value")
    if response.status == 404:
        return CheckResult(ok=False, message=f"there is no feed at {url} (HTTP 404)")
    if not response.ok:
        return CheckResult(ok=False, message=f"the feed answered HTTP {response.status}")
    return CheckResult(ok=True, message="the feed is reachable",
                       details={"status": response.status})


@hookimpl
def gear_streams(config):
    """One stream, whose records become what ``stream_kind`` says."""
    return [StreamInfo(name=STREAM, kind=config["stream_kind"],
                       description=f"{config['format'].upper()} rows from {config['feed_url']}")]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    """The rows changed since ``cursor``, all in one batch."""
    if stream != STREAM:
        raise FeedError(f"unknown stream {stream!r}; this gear offers {STREAM!r}")
    id_field, updated_field = config["id_field"], config["updated_field"]
    since = order_key(cursor) if cursor is not None else None
    rows = parse_feed(_fetch(config, ctx), config["format"], config["records_path"])
    records, problems, newest = [], [], None
    for number, row in enumerate(rows, start=1):
        record_id, updated = row.get(id_field), row.get(updated_field)
        try:
            if record_id in (None, ""):
                raise ValueError(f"no {id_field!r}")
            key = order_key(updated)
        except (TypeError, ValueError):
            problems.append(f"row {number}: {id_field}={record_id!r}, {updated_field}={updated!r}")
            continue
        if since is not None and key <= since:
            continue
        if newest is None or key > newest[0]:
            newest = (key, updated)
        records.append(shape(row, config["stream_kind"], id_field, str(record_id)))
    if problems:
        listed = "; ".join(problems[:MAX_REPORTED])
        more = f" and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        message = (f"{len(problems)} malformed row(s) without a usable {id_field!r} or "
                   f"{updated_field!r}: {listed}{more}")
        if not config["skip_malformed"]:
            raise FeedError(message + " (fix the feed, or turn on skip_malformed)")
        ctx.log.warning("skipped %s", message)
    ctx.log.info("%d of %d rows changed since %s", len(records), len(rows), cursor)
    return RecordBatch(records=records, cursor=newest[1] if newest else cursor, has_more=False)
