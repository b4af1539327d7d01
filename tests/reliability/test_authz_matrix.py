"""Who may call what: every API route and every kind of caller, with the expected status.

The matrix is checked against the app's route table, so a new route without
an entry here fails :func:`test_every_route_has_a_matrix_entry`. Callers:

========================  ==========================================================
``anonymous``             no Authorization header
``business``              member of the workspace ``shop`` (token workspace:shop)
``other_business``        member of another workspace (workspace:mall)
``dev``                   member of the publisher ``acme`` (publish:acme)
``other_dev``             member of another publisher (publish:globex)
``admin``                 an admin with the admin scope
``expired``               member of acme and shop, all scopes, token expired
``revoked``               the same, token revoked
``wrong_scope``           the same user, a ``read``-only token
========================  ==========================================================

A bad token (expired, revoked) is always 401, never treated as anonymous —
except on the two documents that never look at the token (``openapi.json``,
``/healthz``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.sdk.malicious import gear_zip

CALLERS = ("anonymous", "business", "other_business", "dev", "other_dev", "admin", "expired",
           "revoked", "wrong_scope")

_seq = itertools.count(1)


def expect(default: int, **overrides: int) -> dict[str, int]:
    """``default`` for everyone, 401 for bad tokens, then ``overrides``."""
    table = {c: default for c in CALLERS}
    table.update(expired=401, revoked=401)
    table.update(overrides)
    return table


@dataclass
class Ctx:
    reg: Any
    caller: str

    @property
    def headers(self) -> dict[str, str]:
        return self.reg.headers(self.caller)

    def call(self, method: str, url: str, **kw: Any) -> Any:
        return self.reg.client.open(url, method=method.upper(), headers=self.headers, **kw)


def publish(reg: Any, *, approve: bool = True, yank: bool = False, quarantine: bool = False,
            name: str = "matrix") -> str:
    """A new version of ``acme/<name>``; returns ``acme/<name>/<version>``."""
    version = f"1.0.{next(_seq)}"
    data = gear_zip(manifest={"name": f"acme/{name}", "version": version})
    resp = reg.publish(data, who="dev")
    assert resp.status_code == 201, resp.get_json()
    path = f"acme/{name}/{version}"
    if approve:
        ok = reg.client.post(f"/api/v1/admin/gears/{path}/approve", headers=reg.headers("admin"))
        assert ok.status_code == 200, ok.get_json()
    if yank:
        ok = reg.client.post(f"/api/v1/gears/{path}/yank", headers=reg.headers("dev"),
                             json={"reason": "matrix"})
        assert ok.status_code == 200, ok.get_json()
    if quarantine:
        ok = reg.client.post(f"/api/v1/admin/gears/{path}/quarantine",
                             headers=reg.headers("admin"), json={"reason": "matrix"})
        assert ok.status_code == 200, ok.get_json()
    return path


def installation(reg: Any) -> str:
    """A new installation in ``shop`` of a new gear; returns its id."""
    gear = f"inst{next(_seq)}"
    path = publish(reg, name=gear)
    resp = reg.client.post("/api/v1/workspaces/shop/installations", headers=reg.headers("admin"),
                           json={"gear": f"acme/{gear}", "consent": True})
    assert resp.status_code == 201, (path, resp.get_json())
    return str(resp.get_json()["id"])


def _publish_call(c: Ctx) -> Any:
    data = gear_zip(manifest={"name": "acme/matrix-up", "version": f"2.0.{next(_seq)}"})
    return c.reg.publish(data, who=c.caller)


def _install_call(c: Ctx) -> Any:
    gear = f"new{next(_seq)}"
    publish(c.reg, name=gear)
    return c.call("post", "/api/v1/workspaces/shop/installations",
                  json={"gear": f"acme/{gear}", "consent": True})


WS = "/api/v1/workspaces/shop/installations"
PUBLIC = expect(200)
TOKEN_ONLY = expect(200, anonymous=401)
WORKSPACE = expect(403, anonymous=401, business=200, admin=200)
OWNER = expect(403, anonymous=401, dev=200, admin=200)
SEES_PENDING = expect(404, dev=200, admin=200)

#: (route rule, method) -> (how to call it, who gets what)
MATRIX: dict[tuple[str, str], tuple[Callable[[Ctx], Any], dict[str, int]]] = {
    ("/healthz", "GET"): (lambda c: c.call("get", "/healthz"),
                          expect(200, expired=200, revoked=200)),
    ("/api/v1/openapi.json", "GET"): (lambda c: c.call("get", "/api/v1/openapi.json"),
                                      expect(200, expired=200, revoked=200)),
    ("/api/v1/whoami", "GET"): (lambda c: c.call("get", "/api/v1/whoami"), TOKEN_ONLY),
    ("/api/v1/gears", "GET"): (lambda c: c.call("get", "/api/v1/gears?q=matrix"), PUBLIC),
    ("/api/v1/gears", "POST"): (_publish_call,
                                expect(403, anonymous=401, dev=201, admin=201)),
    ("/api/v1/gears/<publisher>/<name>", "GET"): (
        lambda c: c.call("get", "/api/v1/gears/" + publish(c.reg).rsplit("/", 1)[0]), PUBLIC),
    ("/api/v1/gears/<publisher>/<name>/<version>", "GET"): (
        lambda c: c.call("get", "/api/v1/gears/" + publish(c.reg, approve=False, name="pend")),
        SEES_PENDING),
    ("/api/v1/gears/<publisher>/<name>/<version>/download", "GET"): (
        lambda c: c.call("get", f"/api/v1/gears/{publish(c.reg, yank=True)}/download"), PUBLIC),
    ("/api/v1/gears/<publisher>/<name>/<version>/yank", "POST"): (
        lambda c: c.call("post", f"/api/v1/gears/{publish(c.reg)}/yank", json={"reason": "x"}),
        OWNER),
    ("/api/v1/gears/<publisher>/<name>/<version>/unyank", "POST"): (
        lambda c: c.call("post", f"/api/v1/gears/{publish(c.reg, yank=True)}/unyank"), OWNER),
    ("/api/v1/admin/gears/<publisher>/<name>/<version>/approve", "POST"): (
        lambda c: c.call("post", f"/api/v1/admin/gears/{publish(c.reg, approve=False)}/approve"),
        expect(403, anonymous=401, admin=200)),
    ("/api/v1/admin/gears/<publisher>/<name>/<version>/reject", "POST"): (
        lambda c: c.call("post", f"/api/v1/admin/gears/{publish(c.reg, approve=False)}/reject",
                         json={"reason": "not good enough"}),
        expect(403, anonymous=401, admin=200)),
    ("/api/v1/keys", "GET"): (lambda c: c.call("get", "/api/v1/keys"),
                              expect(200, expired=200, revoked=200)),
    ("/api/v1/killlist", "GET"): (lambda c: c.call("get", "/api/v1/killlist"),
                                  expect(200, expired=200, revoked=200)),
    ("/api/v1/admin/gears/<publisher>/<name>/<version>/quarantine", "POST"): (
        lambda c: c.call("post", f"/api/v1/admin/gears/{publish(c.reg)}/quarantine",
                         json={"reason": "malware"}),
        expect(403, anonymous=401, admin=200)),
    ("/api/v1/admin/gears/<publisher>/<name>/<version>/unquarantine", "POST"): (
        lambda c: c.call("post", f"/api/v1/admin/gears/{publish(c.reg, quarantine=True)}/unquarantine",
                         json={"reason": "false alarm"}),
        expect(403, anonymous=401, admin=200)),
    ("/api/v1/admin/gears/<publisher>/<name>/<version>/revet", "POST"): (
        lambda c: c.call("post", f"/api/v1/admin/gears/{publish(c.reg, approve=False)}/revet"),
        expect(403, anonymous=401, admin=202)),
    ("/api/v1/workspaces/<ws>/installations", "GET"): (lambda c: c.call("get", WS), WORKSPACE),
    ("/api/v1/workspaces/<ws>/installations", "POST"): (
        _install_call, expect(403, anonymous=401, business=201, admin=201)),
    ("/api/v1/workspaces/<ws>/installations/plan", "GET"): (
        lambda c: c.call("get", f"{WS}/plan?gear=acme/{publish(c.reg).split('/')[1]}"), WORKSPACE),
    ("/api/v1/workspaces/<ws>/installations/<installation_id:installation_id>", "GET"): (
        lambda c: c.call("get", f"{WS}/{installation(c.reg)}"), WORKSPACE),
    ("/api/v1/workspaces/<ws>/installations/<installation_id:installation_id>", "PATCH"): (
        lambda c: c.call("patch", f"{WS}/{installation(c.reg)}", json={"enabled": False}),
        WORKSPACE),
    ("/api/v1/workspaces/<ws>/installations/<installation_id:installation_id>", "DELETE"): (
        lambda c: c.call("delete", f"{WS}/{installation(c.reg)}"),
        expect(403, anonymous=401, business=204, admin=204)),
}

#: Passes the gate: any answer but 401/403 and below 500 (what it finds is not this test's
#: business; the resource may not exist).
ALLOWED = 0

#: Rules declared once for every route under a prefix, checked route by route.
PREFIX_RULES: dict[str, dict[str, int]] = {
    # The engine API: every route is behind the workspace:<ws> gate.
    "/engine/v1/workspaces/<ws>/": expect(403, anonymous=401, business=ALLOWED, admin=ALLOWED),
    "/engine/v1/openapi.json": expect(200, expired=200, revoked=200),
}

#: Routes outside the matrix on purpose, with the reason.
EXEMPT = {
    ("/static/<path:filename>", "GET"): "public files; no data behind them",
}


def routes(app: Any) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((rule.rule, method))
    return out


@pytest.fixture(scope="module")
def reg(registry):
    """The module registry plus a user in acme and shop with expired, revoked and read tokens."""
    from marketplace.accounts import (
        add_publisher_member,
        add_workspace_member,
        create_token,
        create_user,
        get_publisher,
        get_workspace,
        revoke_token,
    )
    from marketplace.db import database, utcnow

    with database(registry.app).sessionmaker() as s:
        both = create_user(s, "both@acme.test", "developer", None)
        s.flush()
        add_publisher_member(s, get_publisher(s, "acme"), both)
        add_workspace_member(s, get_workspace(s, "shop"), both)
        s.flush()
        s.refresh(both)
        scopes = ["publish:acme", "workspace:shop"]
        registry.tokens["expired"], expired = create_token(s, both, scopes, expires_days=1)
        expired.expires_at = utcnow() - timedelta(minutes=1)
        registry.tokens["revoked"], revoked = create_token(s, both, scopes)
        revoke_token(s, revoked)
        registry.tokens["wrong_scope"], _ = create_token(s, both, ["read"])
        s.commit()
    return registry


def _cases() -> list[tuple[tuple[str, str], str]]:
    return [(key, caller) for key in MATRIX for caller in CALLERS]


@pytest.mark.parametrize(("route", "caller"), _cases(),
                         ids=[f"{m} {r} {c}" for (r, m), c in _cases()])
def test_matrix(reg, route: tuple[str, str], caller: str):
    call, table = MATRIX[route]
    resp = call(Ctx(reg, caller))
    body = resp.get_json(silent=True)
    assert resp.status_code == table[caller], (route, caller, body)
    if resp.status_code >= 400 and route[0].startswith("/api/"):
        assert body and body["error"]["code"], body
    if resp.status_code == 401:
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")


def _prefix_rule(rule: str) -> dict[str, int] | None:
    return next((t for prefix, t in PREFIX_RULES.items() if rule.startswith(prefix)), None)


def test_prefix_rules(reg):
    """Every route under a PREFIX_RULES prefix, by every caller."""
    failures = []
    checked = 0
    for rule in sorted(reg.app.url_map.iter_rules(), key=lambda r: r.rule):
        table = _prefix_rule(rule.rule)
        if table is None:
            continue
        url = rule.build({a: ("shop" if a == "ws" else "x") for a in rule.arguments},
                         append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for caller in CALLERS:
                kw = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                resp = Ctx(reg, caller).call(method, url, **kw)
                want, got = table[caller], resp.status_code
                ok = (got not in (401, 403) and got < 500) if want == ALLOWED else got == want
                checked += 1
                if not ok:
                    failures.append(f"{method} {url} as {caller}: {got}, expected "
                                    f"{'allowed' if want == ALLOWED else want}")
    assert not failures, "\n".join(failures)
    if not checked:
        pytest.skip("no route under a prefix rule is mounted in this build")


def test_every_route_has_a_matrix_entry(registry):
    """A route nobody decided the access rules for fails here: add it to MATRIX."""
    app = registry.app
    known = set(MATRIX) | set(EXEMPT)
    missing = sorted(r for r in routes(app) if r not in known and _prefix_rule(r[0]) is None
                     and re.match(r"^/(api|engine)/", r[0]))
    stale = sorted(set(MATRIX) - routes(app))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"
    assert not missing, f"routes without a matrix entry (decide who may call them): {missing}"
