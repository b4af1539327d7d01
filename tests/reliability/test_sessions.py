"""Web sessions end server-side, through a real server: a cookie copied before sign-out
stops working, and a role change ends the user's sessions and revokes the tokens the new
role may not hold."""

from __future__ import annotations

import re

import pytest
import requests

from tests.reliability.test_races import scalar

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ADMIN, ADMIN_PASSWORD = "admin@gears.test", "admin-password-for-tests"
DEV_PASSWORD = "developer-password-1"


def csrf(http: requests.Session, url: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', http.get(url, timeout=10).text)
    assert match, f"no CSRF field on {url}"
    return match.group(1)


def sign_in(url: str, email: str, password: str) -> requests.Session:
    http = requests.Session()
    resp = http.post(f"{url}/login", data={"email": email, "password": password,
                                           "csrf_token": csrf(http, f"{url}/login")},
                     allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    return http


def copy_of(http: requests.Session) -> requests.Session:
    thief = requests.Session()
    thief.cookies.update(http.cookies)
    return thief


def signed_in(http: requests.Session, url: str) -> bool:
    return "Sign out" in http.get(f"{url}/", timeout=10).text


@pytest.fixture
def server(live_registry):
    reg = live_registry(GEARS_VETTING_INLINE_THREAD="0")
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer", "--password-stdin",
                    input=DEV_PASSWORD + "\n")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    reg.start(workers=2)
    return reg


def test_a_cookie_copied_before_sign_out_no_longer_works(server):
    url = server.url
    admin = sign_in(url, ADMIN, ADMIN_PASSWORD)
    copied = copy_of(admin)
    assert signed_in(copied, url)
    assert copied.get(f"{url}/admin/users", allow_redirects=False, timeout=10).status_code == 200
    out = admin.post(f"{url}/logout", data={"csrf_token": csrf(admin, f"{url}/")},
                     allow_redirects=False, timeout=10)
    assert out.status_code == 302
    assert not signed_in(copied, url)
    resp = copied.get(f"{url}/admin/users", allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_demoting_a_developer_ends_their_sessions_and_publish_tokens(server):
    url = server.url
    token = server.token("dev@acme.test", "publish:acme")
    read_token = server.token("dev@acme.test", "read")
    dev = sign_in(url, "dev@acme.test", DEV_PASSWORD)
    assert signed_in(dev, url)
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{url}/api/v1/whoami", headers=auth, timeout=10).status_code == 200

    admin = sign_in(url, ADMIN, ADMIN_PASSWORD)
    dev_id = scalar(server, "SELECT id FROM users WHERE email = 'dev@acme.test'")
    resp = admin.post(f"{url}/admin/users/{dev_id}/role",
                      data={"role": "business", "csrf_token": csrf(admin, f"{url}/admin/users")},
                      allow_redirects=False, timeout=10)
    assert resp.status_code == 302

    assert not signed_in(dev, url)
    refused = requests.get(f"{url}/api/v1/whoami", headers=auth, timeout=10)
    assert refused.status_code == 401
    publish = requests.post(f"{url}/api/v1/gears", headers=auth,
                            files={"file": ("g.gear", b"PK")}, timeout=10)
    assert publish.status_code == 401
    # A token the new role may still hold keeps working.
    kept = requests.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {read_token}"},
                        timeout=10)
    assert kept.status_code == 200
    revoked = scalar(server, "SELECT count(*) FROM api_tokens t JOIN users u ON u.id = t.user_id "
                     "WHERE u.email = 'dev@acme.test' AND t.revoked_at IS NOT NULL")
    assert revoked == 1
    assert signed_in(admin, url)


def test_deactivation_ends_sessions_server_side(server):
    url = server.url
    dev = sign_in(url, "dev@acme.test", DEV_PASSWORD)
    copied = copy_of(dev)
    admin = sign_in(url, ADMIN, ADMIN_PASSWORD)
    dev_id = scalar(server, "SELECT id FROM users WHERE email = 'dev@acme.test'")
    resp = admin.post(f"{url}/admin/users/{dev_id}/deactivate",
                      data={"csrf_token": csrf(admin, f"{url}/admin/users")},
                      allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert not signed_in(copied, url)
    assert scalar(server, "SELECT count(*) FROM web_sessions WHERE user_id = :u", u=dev_id) == 0
