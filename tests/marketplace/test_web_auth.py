"""Web sign-in: CSRF on every form, session rotation, same-site redirects only, and a
limit on failed attempts."""

# ruff: noqa: F811  (fixtures imported from web_support are redefined as parameters)
from __future__ import annotations

import pytest

from marketplace import ratelimit
from marketplace.web.session import safe_next
from tests.marketplace.web_support import PASSWORD, business, csrf_token, sign_in  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr(ratelimit, "login_failures", ratelimit.SlidingWindowLimiter())
    import marketplace.web.views_account as views

    monkeypatch.setattr(views, "login_failures", ratelimit.login_failures)


def session_cookie(client):
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def test_post_without_or_with_a_wrong_token_is_403(client, business):
    csrf_token(client)
    form = {"email": business.email, "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
    resp = client.post("/logout")
    assert resp.status_code == 403 and "expired" in resp.get_data(as_text=True)


def test_api_posts_are_not_subject_to_csrf(client):
    assert client.post("/api/v1/gears").status_code == 401  # bearer auth, not CSRF


def test_sign_in_rotates_the_session_and_sign_out_ends_it(client, business):
    token = csrf_token(client)
    before = session_cookie(client)
    resp = client.post("/login", data={"email": business.email.upper(), "password": PASSWORD,
                                       "csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    after = session_cookie(client)
    assert after and after != before
    assert csrf_token(client, "/") != token  # the CSRF token was replaced too
    page = client.get("/").get_data(as_text=True)
    assert business.email in page and "Sign out" in page
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert "Sign in" in client.get("/").get_data(as_text=True)


def test_cookie_flags(client, business):
    token = csrf_token(client)
    resp = client.post("/login", data={"email": business.email, "password": PASSWORD,
                                       "csrf_token": token})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example", "/\\evil.example",
                                    "https:evil.example", "javascript:alert(1)", "/ok\r\nX: y",
                                    "evil.example"])
def test_open_redirects_are_refused(client, business, target):
    assert safe_next(target) == "/"
    token = csrf_token(client)
    resp = client.post("/login", data={"email": business.email, "password": PASSWORD,
                                       "csrf_token": token, "next": target})
    assert resp.headers["Location"] == "/"


def test_local_next_is_followed(client, business):
    assert safe_next("/workspaces/shop?x=1") == "/workspaces/shop?x=1"
    resp = client.get("/workspaces/shop")
    assert resp.status_code == 302 and "/login?next=/workspaces/shop" in resp.headers["Location"]
    token = csrf_token(client)
    resp = client.post("/login", data={"email": business.email, "password": PASSWORD,
                                       "csrf_token": token, "next": "/workspaces/shop"})
    assert resp.headers["Location"] == "/workspaces/shop"


def test_wrong_password_then_rate_limited(client, business):
    token = csrf_token(client)
    bad = {"email": business.email, "password": "nope", "csrf_token": token}
    for _ in range(ratelimit.MAX_FAILURES):
        resp = client.post("/login", data=bad)
        assert resp.status_code == 401
        assert "not right" in resp.get_data(as_text=True)
    resp = client.post("/login", data={**bad, "password": PASSWORD})
    assert resp.status_code == 429 and "Too many" in resp.get_data(as_text=True)


def test_limiter_window_slides():
    now = [0.0]
    limiter = ratelimit.SlidingWindowLimiter(limit=2, window=10, clock=lambda: now[0])
    limiter.hit("k")
    limiter.hit("k")
    assert limiter.retry_after("k") == 11
    now[0] = 10.5
    assert limiter.retry_after("k") == 0
