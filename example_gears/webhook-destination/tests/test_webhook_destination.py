"""acme/webhook-destination, through the gears_sdk.testing fixtures."""

import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from gears_sdk.errors import GearsError

URL = "https://hooks.example.com/gears"
SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def webhook(load_gear, gear, monkeypatch):
    """The gear with a signing secret, whose retry waits are recorded instead of slept."""
    loaded = load_gear(gear.path, secrets={"signing_secret": SECRET})
    loaded.slept = []
    monkeypatch.setattr(loaded.module, "_sleep", loaded.slept.append)
    return loaded


def _members(n):
    return [{"id": f"u{i}", "attributes": {"email": f"u{i}@example.com"}} for i in range(1, n + 1)]


def verify(request, secret=SECRET):
    """What a receiver does: recompute the signature over timestamp and exact body bytes."""
    timestamp = request.headers["X-Gears-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request.data,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["X-Gears-Signature"], f"sha256={expected}")


def test_sends_signed_batches(webhook):
    webhook.ctx.http.add("POST", URL, status=202)
    result = webhook.write("members", _members(5), config={"batch_size": 2})
    assert (result.written, result.failed, result.errors) == (5, 0, [])
    requests = webhook.ctx.http.requests
    assert len(requests) == 3
    for request in requests:
        assert verify(request)
        assert not verify(request, secret="some-other-secret-value")
        assert request.headers["Content-Type"] == "application/json"
    bodies = [json.loads(r.data) for r in requests]
    assert [len(b["members"]) for b in bodies] == [2, 2, 1]
    assert bodies[0] == {"event": "segment.members", "stream": "members",
                         "members": [{"id": "u1", "email": "u1@example.com"},
                                     {"id": "u2", "email": "u2@example.com"}]}
    assert len({r.headers["X-Gears-Delivery"] for r in requests}) == 3


def test_a_tampered_body_or_timestamp_fails_verification(webhook):
    webhook.ctx.http.add("POST", URL)
    webhook.write("members", _members(1))
    [request] = webhook.ctx.http.requests
    assert verify(request)
    tampered = replace(request, data=request.data.replace(b"u1@", b"evil@"))
    assert not verify(tampered)
    replayed = replace(request, headers={**request.headers, "X-Gears-Timestamp": "1"})
    assert not verify(replayed)


def test_only_id_and_email_leave_the_engine(webhook):
    webhook.ctx.http.add("POST", URL)
    webhook.write("members", [{"id": "u1", "attributes": {"email": "a@example.com", "phone": "+1"},
                               "traits": {"ltv": 900}}, {"user_id": "u2"}])
    body = json.loads(webhook.ctx.http.requests[0].data)
    assert body["members"] == [{"id": "u1", "email": "a@example.com"}, {"id": "u2"}]


def test_retries_a_503_then_succeeds(webhook):
    webhook.ctx.http.add("POST", URL, status=503)
    webhook.ctx.http.add("POST", URL, status=200)
    result = webhook.write("members", _members(3))
    assert (result.written, result.failed) == (3, 0)
    first, second = webhook.ctx.http.requests
    assert first.data == second.data and verify(second)
    assert first.headers["X-Gears-Delivery"] == second.headers["X-Gears-Delivery"]
    assert webhook.slept == [0.5]


def test_honours_retry_after_up_to_the_cap(webhook):
    http = webhook.ctx.http
    http.add("POST", URL, status=429, headers={"Retry-After": "2"})
    http.add("POST", URL, status=429, headers={"retry-after": "120"})
    http.add("POST", URL, status=204)
    result = webhook.write("members", _members(1))
    assert result.written == 1
    assert webhook.slept == [2.0, 5]


def test_backoff_doubles_and_failure_is_reported(webhook):
    webhook.ctx.http.add("POST", URL, status=502)
    result = webhook.write("members", _members(4), config={"batch_size": 4, "max_attempts": 4})
    assert (result.written, result.failed) == (0, 4)
    assert result.errors == ["batch 1 (4 members): HTTP 502 after 4 attempts"]
    assert webhook.slept == [0.5, 1.0, 2.0]
    assert len(webhook.ctx.http.requests) == 4


def test_client_errors_are_not_retried(webhook):
    webhook.ctx.http.add("POST", URL, status=400)
    result = webhook.write("members", _members(2))
    assert result.failed == 2 and result.errors == ["batch 1 (2 members): HTTP 400"]
    assert len(webhook.ctx.http.requests) == 1 and webhook.slept == []


def test_connection_errors_are_retried(webhook, monkeypatch):
    webhook.ctx.http.add("POST", URL)
    real_post, calls = webhook.ctx.http.post, []

    def flaky_post(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise ConnectionError("connection reset")
        return real_post(url, **kwargs)

    monkeypatch.setattr(webhook.ctx.http, "post", flaky_post)
    assert webhook.write("members", _members(1)).written == 1
    assert len(calls) == 2


def test_retry_waiting_is_bounded_per_call(webhook, monkeypatch):
    monkeypatch.setattr(webhook.module, "WAIT_BUDGET_S", 1.0)
    webhook.ctx.http.add("POST", URL, status=503)
    result = webhook.write("members", _members(3), config={"batch_size": 1})
    assert result.failed == 3
    assert sum(webhook.slept) <= 1.0
    assert "retry time is used up" in result.errors[-1]


def test_retry_after_accepts_http_dates(gear):
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:03 GMT"}
    assert gear.module.retry_after(headers, now=1445412480.0) == 3.0
    assert gear.module.retry_after({"Retry-After": "soon"}) is None
    assert gear.module.retry_after({}) is None


def test_write_without_a_secret_fails_clearly(gear):
    with pytest.raises(gear.module.WebhookError, match="signing_secret is not set"):
        gear.write("members", _members(1))
    assert gear.ctx.http.requests == []


def test_check_sends_a_signed_empty_ping(webhook):
    webhook.ctx.http.add("POST", URL, status=200)
    assert webhook.check().ok
    [request] = webhook.ctx.http.requests
    assert verify(request) and json.loads(request.data) == {"event": "ping", "members": []}


def test_check_reports_problems(webhook, gear):
    webhook.ctx.http.add("POST", URL, status=401)
    result = webhook.check()
    assert not result.ok and "same signing secret" in result.message
    result = webhook.check({"webhook_url": "https://example.org/hook"})
    assert not result.ok and "network permission" in result.message
    assert "signing_secret is not set" in gear.check().message


def test_streams_and_unknown_stream(webhook):
    [stream] = webhook.streams()
    assert stream.name == "members" and stream.kind == "profiles" and not stream.incremental
    with pytest.raises(webhook.module.WebhookError, match="unknown stream"):
        webhook.write("orders", _members(1))


def test_short_secrets_are_refused_by_the_schema(gear):
    with pytest.raises(GearsError, match="signing_secret"):
        gear.check({"signing_secret": "short"})
