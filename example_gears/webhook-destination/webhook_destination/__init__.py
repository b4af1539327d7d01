"""Webhook destination: segment members POSTed in signed batches.

Every request carries::

    X-Gears-Timestamp: <unix seconds>
    X-Gears-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by signing_secret>
    X-Gears-Delivery:  <an id, the same on every retry of a batch>

The signature covers the exact body bytes sent, and the timestamp, so a
receiver can refuse both forged and replayed deliveries.

Failed batches are retried on 429, 5xx and connection errors, waiting
``backoff_seconds`` (doubled each retry) or the server's ``Retry-After``, both
capped. All the waiting in one call shares a budget, and batches still
unsent near the call's deadline are reported as failed rather than
overrunning it: ``gear_write`` always returns a WriteResult counting what
was delivered and what was not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from email.utils import parsedate_to_datetime

from gears_sdk import hookimpl
from gears_sdk.types import CheckResult, StreamInfo, WriteResult

STREAM = "members"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Seconds of retry waiting allowed in one call, all batches together.
WAIT_BUDGET_S = 10.0
#: No new batch is started after this many seconds (limits.timeout_ms is 30 s).
SEND_DEADLINE_S = 20.0

_sleep = time.sleep  # tests replace it to run without waiting


class WebhookError(Exception):
    """The webhook cannot be used as configured; the message says what to fix."""


def sign(secret, timestamp, body):
    """The ``X-Gears-Signature`` value for ``body`` (bytes) sent at ``timestamp``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def _secret(ctx):
    secret = ctx.secrets.get("signing_secret")
    if not secret:
        raise WebhookError("signing_secret is not set; add it in the installation's settings")
    return secret


def _signed_request(secret, payload):
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Gears-Timestamp": timestamp,
               "X-Gears-Signature": sign(secret, timestamp, body),
               "X-Gears-Delivery": uuid.uuid4().hex}
    return body, headers


def _member(record):
    member = {"id": str(record.get("id") or record.get("user_id") or "")}
    email = (record.get("attributes") or {}).get("email")
    if email:
        member["email"] = email
    return member


def retry_after(headers, now=None):
    """Seconds asked for by a ``Retry-After`` header (seconds or an HTTP date), or None."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def _deliver(url, body, headers, config, ctx, budget):
    """POST one batch with retries; None when delivered, else why not."""
    attempts = config["max_attempts"]
    for attempt in range(1, attempts + 1):
        asked = None
        try:
            response = ctx.http.post(url, data=body, headers=headers)
        except (ConnectionError, TimeoutError) as exc:
            error = f"could not reach the webhook ({exc})"
        else:
            if 200 <= response.status < 300:
                return None
            error = f"HTTP {response.status}"
            if response.status not in RETRY_STATUSES:
                return error
            asked = retry_after(response.headers)
        if attempt == attempts:
            return f"{error} after {attempts} attempts"
        backoff = config["backoff_seconds"] * 2 ** (attempt - 1)
        wait = min(asked if asked is not None else backoff, config["max_retry_after_seconds"])
        if wait > budget["wait_left"]:
            return f"{error}; not retried, the call's retry time is used up"
        budget["wait_left"] -= wait
        ctx.log.info("webhook answered %s; retry %d in %.1fs", error, attempt, wait)
        _sleep(wait)
    return error  # not reached: the loop returns on its last attempt


@hookimpl
def gear_check(config, ctx):
    """POST a signed ping with no members; the receiver should answer 2xx."""
    try:
        body, headers = _signed_request(_secret(ctx), {"event": "ping", "members": []})
        response = ctx.http.post(config["webhook_url"], data=body, headers=headers)
    except WebhookError as exc:
        return CheckResult(ok=False, message=str(exc))
    except PermissionError:
        return CheckResult(ok=False, message=f"this gear may not reach {config['webhook_url']}: "
                           "its host is not in the gear's network permission (see the README)")
    except (ConnectionError, TimeoutError) as exc:
        return CheckResult(ok=False, message=f"could not reach the webhook: {exc}")
    if response.status in (401, 403):
        return CheckResult(ok=False, message=f"the webhook refused the signed ping (HTTP "
                           f"{response.status}); check that it uses the same signing secret")
    if not 200 <= response.status < 300:
        return CheckResult(ok=False, message=f"the webhook answered HTTP {response.status}")
    return CheckResult(ok=True, message="the webhook accepted a signed ping")


@hookimpl
def gear_streams():
    """One destination stream: the members of the exported segment."""
    return [StreamInfo(name=STREAM, kind="profiles", incremental=False,
                       description="segment members, POSTed as {id, email} in signed batches")]


@hookimpl
def gear_write(stream, records, config, ctx):
    """Send ``records`` in batches of ``batch_size``; count what was delivered."""
    if stream != STREAM:
        raise WebhookError(f"unknown stream {stream!r}; this gear writes {STREAM!r}")
    secret = _secret(ctx)
    size = config["batch_size"]
    started, budget = time.monotonic(), {"wait_left": WAIT_BUDGET_S}
    result = WriteResult()
    for number, start in enumerate(range(0, len(records), size), start=1):
        batch = records[start:start + size]
        if time.monotonic() - started > SEND_DEADLINE_S:
            error = "not sent: the call ran out of time"
        else:
            body, headers = _signed_request(secret, {"event": "segment.members", "stream": stream,
                                                     "members": [_member(r) for r in batch]})
            error = _deliver(config["webhook_url"], body, headers, config, ctx, budget)
        if error is None:
            result.written += len(batch)
        else:
            result.failed += len(batch)
            result.errors.append(f"batch {number} ({len(batch)} members): {error}")
    return result
