"""The admin pages in headless Chromium against a real registry on loopback.

The registry vets uploads in its own background thread (as ``make run`` does); an
admin works through the review queue (oldest first), reads a version's findings, file
diff and capability diff, rejects one version with a reason and approves another,
quarantines a third (the signed kill list names it at once), filters the audit log,
and manages users, publishers and tokens. A business user gets 403, and the publisher
reads the rejection on the web and with ``gears status``. Screenshots of every page
land in ``<test_output_dir>/screenshots/admin-*.png``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from gears_sdk.archive import build_archive_bytes
from tests.fixtures.gears import gear_manifest, write_gear
from tests.fixtures.live import GEARS, LiveRegistry

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN, ADMIN_PASSWORD = "admin@gears.test", "admin-password-for-tests"
DEV, DEV_PASSWORD = "dev@acme.test", "dev-password-for-tests"
BIZ, BIZ_PASSWORD = "biz@shop.test", "biz-password-for-tests"

HELLO_V2 = '''\
import html

from gears_sdk import hookimpl

from hello.weather import forecast


@hookimpl
def gear_render(profile, content, config, ctx):
    name = (profile.get("attributes") or {}).get("first_name", "there")
    return {"html": "<p>Hi, " + html.escape(str(name)) + "! " + forecast() + "</p>"}
'''
WEATHER = '''\
import requests


def forecast():
    try:
        return requests.get("https://api.example.com/today", timeout=1).text
    except Exception:
        return ""
'''
RISKY = '''\
from gears_sdk import hookimpl

API_KEY = "Zq8r2Lx9Vb4Nm7Tk1Wc6Hy3Pd5"


@hookimpl
def gear_render(profile, content, config, ctx):
    return {"html": str(eval(content.get("expr", "1+1")))}
'''


def publish(reg: LiveRegistry, token: str, tmp: Path, name: str, version: str,
            module: str | None = None, extra: dict[str, str] | None = None,
            **overrides: Any) -> None:
    manifest = gear_manifest(name, version, "template", **overrides)
    gear_dir = write_gear(tmp / "gears", manifest, module, extra)
    data, _ = build_archive_bytes(gear_dir)
    resp = requests.post(f"{reg.url}/api/v1/gears", files={"file": ("g.gear", data)},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert resp.status_code == 201, resp.text


def wait_vetted(reg: LiveRegistry, token: str, name: str, version: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        body = requests.get(f"{reg.url}/api/v1/gears/{name}/{version}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}).json()
        if body["vetting"] and body["vetting"]["state"] in ("done", "error"):
            return body
        assert time.monotonic() < deadline, f"{name} {version} was not vetted: {body}"
        time.sleep(0.3)


@pytest.fixture
def registry(live_registry, tmp_path) -> tuple[LiveRegistry, dict[str, str]]:
    reg = live_registry(GEARS_VETTING_SANDBOX_MIN_LEVEL="dev-unsafe",
                        GEARS_VETTING_POLL_SECONDS="0.3")
    reg.marketplace("create-user", DEV, "--role", "developer", "--password-stdin",
                    input=DEV_PASSWORD + "\n")
    reg.marketplace("create-publisher", "acme", "--owner", DEV)
    reg.marketplace("create-user", BIZ, "--role", "business", "--password-stdin",
                    input=BIZ_PASSWORD + "\n")
    tokens = {"dev": reg.token(DEV, "publish:acme"), "admin": reg.token(ADMIN, "admin"),
              "ci": reg.token(DEV, "publish:acme"), "ops": reg.token(ADMIN, "admin")}
    reg.start()
    pub = lambda *a, **k: publish(reg, tokens["dev"], tmp_path, *a, **k)  # noqa: E731
    pub("acme/hello", "1.0.0")
    wait_vetted(reg, tokens["dev"], "acme/hello", "1.0.0")
    assert requests.post(f"{reg.url}/api/v1/admin/gears/acme/hello/1.0.0/approve", timeout=30,
                         headers={"Authorization": f"Bearer {tokens['admin']}"}).ok
    pub("acme/hello", "1.1.0", module=HELLO_V2, extra={"hello/weather.py": WEATHER,
                                                       "hello/__init__.py": HELLO_V2},
        entrypoint="hello",
        permissions={"network": ["api.example.com"],
                     "profile": {"read": ["attributes.first_name"], "write": []}})
    pub("acme/risky", "1.0.0", module=RISKY)
    for name, version in (("acme/hello", "1.1.0"), ("acme/risky", "1.0.0")):
        wait_vetted(reg, tokens["dev"], name, version)
    return reg, tokens


def sign_in(page: Any, url: str, email: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def test_admin_review_quarantine_audit_and_accounts(registry, page, browser, shoot):
    reg, tokens = registry
    url = reg.url
    sign_in(page, url, ADMIN, ADMIN_PASSWORD)

    # -- the queue: oldest first, with age and findings ---------------------------------
    page.goto(f"{url}/admin/")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 2
    assert "acme/hello" in rows.nth(0).inner_text() and "acme/risky" in rows.nth(1).inner_text()
    assert "min" in rows.nth(0).inner_text()  # the age
    assert "HIGH" in rows.nth(1).inner_text().upper()
    shoot(page, "admin-01-queue")

    # -- a version: findings, capability diff, file diff -------------------------------
    with page.expect_navigation():
        rows.nth(0).get_by_role("link", name="Review", exact=True).click()
    assert page.locator("h1").inner_text().startswith("Hello")
    findings = page.locator("table.findings").inner_text()
    assert "raw_network" in findings and "capabilities_added" in findings
    assert "hello/weather.py" in findings
    added = page.locator(".diff-added").inner_text()
    assert "network:api.example.com" in added and "Send requests to api.example.com" in added
    summary = page.locator(".file-summary").inner_text()
    assert "hello/weather.py" in summary and "added" in summary.lower()
    assert page.locator(".udiff .ln-add", has_text="import requests").count() >= 1
    shoot(page, "admin-02-version-diff")
    page.get_by_label("Reason for: Approve and sign").fill("network use reviewed")
    with page.expect_navigation():
        page.get_by_role("button", name="Approve and sign").click()
    assert "approved and signed" in page.locator(".flash-success").inner_text()
    approved = requests.get(f"{url}/api/v1/gears/acme/hello/1.1.0", timeout=10).json()
    assert approved["status"] == "approved" and approved["signature"] and approved["key_id"]

    # -- reject with a reason ------------------------------------------------------------
    with page.expect_navigation():
        page.locator("table.queue").get_by_role("link", name="Review", exact=True).first.click()
    assert "eval" in page.locator("table.findings").inner_text()
    assert "secret_generic" in page.locator("table.findings").inner_text()
    shoot(page, "admin-03-risky")
    page.get_by_label("Reason for: Reject").fill("eval() on content and a committed API key")
    with page.expect_navigation():
        page.get_by_role("button", name="Reject").click()
    assert "rejected" in page.locator(".flash-success").inner_text()
    assert page.locator("table.queue").count() == 0  # queue empty
    shoot(page, "admin-04-queue-empty")

    # -- quarantine: the signed kill list names it at once --------------------------------
    page.goto(f"{url}/admin/gears/acme/hello/1.0.0")
    page.get_by_label("Reason for: Quarantine everywhere").fill("phones home with profiles")
    with page.expect_navigation():
        page.get_by_role("button", name="Quarantine everywhere").click()
    assert "quarantined" in page.locator(".flash-success").inner_text()
    assert page.locator(".notice-error", has_text="phones home").count() == 1
    shoot(page, "admin-05-quarantined")
    kill = requests.get(f"{url}/api/v1/killlist", timeout=10).json()
    assert [(e["name"], e["version"]) for e in kill["entries"]] == [("acme/hello", "1.0.0")]
    assert kill["signature"] and kill["key_id"]

    # -- accounts -----------------------------------------------------------------------
    with page.expect_navigation():
        page.get_by_role("link", name="Publishers").click()
    with page.expect_navigation():
        page.get_by_role("row", name="acme").get_by_role("button", name="Verify").click()
    assert "acme verified" in page.locator(".flash-success").inner_text()
    shoot(page, "admin-06-publishers")
    with page.expect_navigation():
        page.get_by_role("link", name="Users").click()
    biz_row = page.get_by_role("row").filter(has_text=BIZ)
    with page.expect_navigation():
        biz_row.get_by_role("button", name="Deactivate").click()
    assert "deactivated" in page.locator(".flash-success").inner_text()
    dev_row = page.get_by_role("row").filter(has_text=DEV)
    dev_row.get_by_label(f"Role of {DEV}").select_option("business")
    with page.expect_navigation():
        dev_row.get_by_role("button", name="Change").click()
    assert f"{DEV} is now a business" in page.locator(".flash-success").inner_text()
    page.get_by_role("row").filter(has_text=DEV).get_by_label(f"Role of {DEV}").select_option(
        "developer")
    with page.expect_navigation():
        page.get_by_role("row").filter(has_text=DEV).get_by_role("button", name="Change").click()
    shoot(page, "admin-07-users")
    with page.expect_navigation():
        page.get_by_role("link", name="Tokens").click()
    # demoting the developer revoked the publish tokens a business user may not hold
    assert page.get_by_role("row").filter(has_text=tokens["ci"][:12]).count() == 0
    with page.expect_navigation():
        page.get_by_role("link", name="Show revoked too").click()
    assert "revoked" in page.get_by_role("row").filter(has_text=tokens["ci"][:12]).inner_text()
    ops = tokens["ops"][:12]
    with page.expect_navigation():
        page.get_by_role("row").filter(has_text=ops).get_by_role("button", name="Revoke").click()
    assert "revoked" in page.locator(".flash-success").inner_text()
    shoot(page, "admin-08-tokens")
    for name in ("ci", "ops"):
        who = requests.get(f"{url}/api/v1/whoami", timeout=10,
                           headers={"Authorization": f"Bearer {tokens[name]}"})
        assert who.status_code == 401, name

    # -- the audit log, filtered ---------------------------------------------------------
    with page.expect_navigation():
        page.get_by_role("link", name="Audit log").click()
    assert page.locator("table.audit tbody tr").count() >= 8
    page.get_by_label("Action", exact=True).select_option("version.reject")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 1
    text = rows.first.inner_text()
    assert ADMIN in text and "acme/risky@1.0.0" in text and "committed API key" in text
    assert "pending" in text and "rejected" in text  # before → after
    page.get_by_label("Action", exact=True).select_option("")
    page.get_by_label("Actor", exact=True).fill("system")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert page.locator("table.audit tbody tr").count() >= 1  # init created the admin
    page.get_by_label("Actor", exact=True).fill(ADMIN)
    page.get_by_label("Target", exact=True).fill("acme/hello@1.0.0")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    page.get_by_label("From", exact=True).fill(today)
    page.get_by_label("To", exact=True).fill(today)
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    actions = page.locator("table.audit tbody td:nth-child(3)").all_inner_texts()
    assert set(actions) == {"version.approve", "version.quarantine"}
    shoot(page, "admin-09-audit")

    # -- others get 403 ------------------------------------------------------------------
    # (the deactivated business user cannot even sign in; reactivate them first)
    with page.expect_navigation():
        page.get_by_role("link", name="Users").click()
    with page.expect_navigation():
        page.get_by_role("row").filter(has_text=BIZ).get_by_role("button", name="Reactivate").click()
    biz = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(biz, url, BIZ, BIZ_PASSWORD)
    for path in ("/admin/", "/admin/audit", "/admin/users", "/admin/gears/acme/risky/1.0.0"):
        assert biz.goto(f"{url}{path}").status == 403, path
    shoot(biz, "admin-10-forbidden")
    biz.context.close()

    # -- the publisher sees why, on the web and with `gears status` ----------------------
    dev = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(dev, url, DEV, DEV_PASSWORD)
    dev.goto(f"{url}/gears/acme/risky/1.0.0/review")
    assert "committed API key" in dev.locator(".notice-error").inner_text()
    assert "dynamic_code" in dev.locator("table.findings").inner_text()
    shoot(dev, "admin-11-publisher-review")
    assert dev.goto(f"{url}/admin/").status == 403
    dev.context.close()
    status = subprocess.run([*GEARS, "status", "acme/risky", "1.0.0"], capture_output=True,
                            text=True, timeout=60,
                            env={**reg.env, "GEARS_REGISTRY": url,
                                 # the demotion above revoked the developer's first token
                                 "GEARS_TOKEN": reg.token(DEV, "publish:acme")})
    assert status.returncode == 0, status.stderr
    assert "committed API key" in status.stdout
    assert "[high] dynamic_code at risky.py:8" in status.stdout, status.stdout
