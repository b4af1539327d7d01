"""A business user's journey through the web catalog, in headless Chromium against a real
registry on loopback: browse, search, read a gear, install it with a config (fixing an
invalid value first), upgrade it past a permission change, disable it and uninstall it.
Also: hostile READMEs and titles do not run, CSRF and open redirects are refused, and
signing in rotates the session. Every page is saved as a screenshot for people to review."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests

from gears_sdk.archive import build_archive_bytes
from tests.fixtures.gears import gear_manifest, write_gear
from tests.fixtures.live import LiveRegistry
from tests.marketplace.web_support import CONNECTOR_MODULE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BIZ, BIZ_PASSWORD = "ana@shop.test", "ana-password-for-tests"
XSS = "window.__xss = 1; alert('xss')"

SHOP_SCHEMA = {
    "type": "object",
    "required": ["store_url", "window_days"],
    "properties": {
        "store_url": {"type": "string", "format": "uri", "title": "Store URL",
                      "description": "The address of your shop, e.g. https://shop.example.com"},
        "window_days": {"type": "integer", "minimum": 1, "maximum": 365, "default": 90,
                        "title": "History window (days)",
                        "description": "How many days of orders to import the first time."},
        "mode": {"type": "string", "enum": ["incremental", "full"], "default": "incremental",
                 "title": "Sync mode"},
        "include_refunds": {"type": "boolean", "default": True, "title": "Include refunds"},
        "tags": {"type": "array", "items": {"type": "string"}, "title": "Order tags to skip"},
        "api_key": {"type": "string", "format": "secret", "title": "API key",
                    "description": "Create one in your shop's admin under Apps → API."},
    },
}

README_XSS = f"""# Hello banner

Greets each visitor by name.

<script>{XSS}</script>
<img src="x" onerror="{XSS}">
[click me](javascript:{XSS})
<a href="https://example.com" onclick="{XSS}">docs</a>

| placement | works |
| --- | --- |
| home | yes |
"""


def publish(reg: LiveRegistry, tokens: dict[str, str], tmp: Path, name: str, version: str,
            kind: str = "extension", readme: str | None = None, **overrides: Any) -> None:
    module = None
    if kind == "connector":
        overrides.setdefault("hooks", ["gear_check", "gear_streams", "gear_read"])
        module = CONNECTOR_MODULE
    manifest = gear_manifest(name, version, kind, **overrides)
    gear_dir = write_gear(tmp / "gears", manifest, module)
    if readme is not None:
        (gear_dir / "README.md").write_text(readme)
    data, _ = build_archive_bytes(gear_dir)
    resp = requests.post(f"{reg.url}/api/v1/gears", files={"file": ("g.gear", data)},
                         headers={"Authorization": f"Bearer {tokens['dev']}"}, timeout=60)
    assert resp.status_code == 201, resp.text
    approved = requests.post(f"{reg.url}/api/v1/admin/gears/{name}/{version}/approve",
                             headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=30)
    assert approved.status_code == 200, approved.text


@pytest.fixture
def registry(live_registry, tmp_path) -> LiveRegistry:
    reg = live_registry()
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    reg.marketplace("create-user", BIZ, "--role", "business", "--password-stdin",
                    input=BIZ_PASSWORD + "\n")
    reg.marketplace("create-workspace", "shop", "--member", BIZ)
    tokens = {"dev": reg.token("dev@acme.test", "publish:acme"),
              "admin": reg.token("admin@gears.test", "admin")}
    reg.start()
    pub = lambda *a, **k: publish(reg, tokens, tmp_path, *a, **k)  # noqa: E731
    pub("acme/shop-sync", "1.0.0", "connector", title="Shop Sync",
        summary="Imports orders and customers from your online shop every night.",
        config_schema=SHOP_SCHEMA, categories=["commerce", "import"],
        permissions={"network": ["api.shop.example"]},
        readme="# Shop Sync\n\nImports **orders** and customers.\n\n## Setup\n\n1. Create an API key.\n2. Paste it below.\n")
    pub("acme/shop-sync", "1.1.0", "connector", title="Shop Sync",
        summary="Imports orders and customers from your online shop every night.",
        config_schema=SHOP_SCHEMA, categories=["commerce", "import"],
        permissions={"network": ["api.shop.example", "cdn.shop.example"],
                     "profile": {"write": ["traits.last_order"]}})
    pub("acme/rfm-score", "2.0.0", "extension", title="RFM score",
        summary="Scores every profile by recency, frequency and monetary value.",
        categories=["scoring"])
    pub("acme/churn-risk", "1.0.0", "extension", title="Churn risk",
        summary="Flags customers who are likely to stop buying.", categories=["scoring"])
    pub("acme/hello", "1.0.0", "template", readme=README_XSS,
        title=f'Hello <img src=x onerror="{XSS}">',
        summary=f"<script>{XSS}</script> greets visitors", categories=["content"])
    return reg


def no_xss(page: Any) -> None:
    assert page.dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"


def session_cookie(page: Any) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "session"), None)


def test_browse_install_upgrade_disable_uninstall(registry, page, shoot):
    url = registry.url
    page.goto(url + "/")
    assert page.locator("h1").count() == 1
    assert page.get_by_role("heading", name="Most installed").is_visible()
    shoot(page, "01-home")

    page.get_by_label("Search gears").fill("shop")
    page.get_by_label("Search gears").press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=shop"))
    assert page.get_by_role("link", name="Shop Sync").is_visible()
    shoot(page, "02-search")

    page.goto(url + "/search?kind=extension&sort=name")
    assert page.locator(".gear-card").count() == 2
    shoot(page, "03-search-facets")

    page.goto(url + "/search?q=shop")
    page.get_by_role("link", name="Shop Sync").click()
    page.wait_for_url(re.compile(r"/gears/acme/shop-sync$"))
    assert page.get_by_role("heading", name="What it can do").is_visible()
    shoot(page, "04-gear-page")

    page.goto(url + "/gears/acme/shop-sync/1.0.0")
    anonymous = session_cookie(page)
    page.get_by_role("link", name="Sign in to install").click()
    page.wait_for_url(re.compile(r"/login"))
    shoot(page, "05-login")
    page.get_by_label("Email").fill(BIZ)
    page.get_by_label("Password").fill(BIZ_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/gears/acme/shop-sync/1.0.0$"))
    assert session_cookie(page) not in (None, anonymous)

    page.get_by_role("button", name="Install 1.0.0").click()
    page.wait_for_url(re.compile(r"/workspaces/shop/install/acme/shop-sync"))
    assert page.get_by_label("History window (days)").input_value() == "90"
    shoot(page, "06-install-form")

    page.get_by_label("Store URL").fill("not a url")
    page.get_by_label("History window (days)").fill("0")
    page.get_by_label("Order tags to skip").fill("test\nwholesale")
    page.get_by_label("API key").fill("sk-live-123")
    page.get_by_role("button", name="Continue to permissions").click()
    errors = page.locator(".field-errors")
    assert errors.count() == 2
    assert "at least 1" in page.locator("#f-window_days-error").inner_text()
    assert page.get_by_label("Store URL").input_value() == "not a url"
    assert page.get_by_label("Order tags to skip").input_value() == "test\nwholesale"
    assert page.get_by_label("API key").input_value() == ""  # secrets are never sent back
    shoot(page, "07-install-inline-errors")

    page.get_by_label("Store URL").fill("https://shop.example.com")
    page.get_by_label("History window (days)").fill("30")
    page.get_by_label("API key").fill("sk-live-123")
    page.get_by_role("button", name="Continue to permissions").click()
    assert page.get_by_role("heading", name=re.compile("Allow Shop Sync")).is_visible()
    assert "sk-live-123" not in page.content()
    shoot(page, "08-consent")
    page.get_by_label(re.compile("I allow Shop Sync")).check()
    page.get_by_role("button", name="Install Shop Sync").click()
    page.wait_for_url(re.compile(r"/workspaces/shop$"))
    assert "is installed" in page.locator(".flash").inner_text()
    assert page.get_by_role("link", name="Upgrade to 1.1.0 available").is_visible()
    shoot(page, "09-dashboard-installed")

    page.get_by_role("button", name="Test connection").click()
    # the engine runs the connector's gear_check in its sandbox and reports the answer
    assert "Shop Sync: the connection works" in page.locator(".flash").inner_text()

    page.get_by_role("link", name="Settings").click()
    assert page.get_by_label("API key").input_value() == ""
    assert page.get_by_text("Leave blank to keep the current value").is_visible()
    shoot(page, "10-settings")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url(re.compile(r"/workspaces/shop$"))

    page.get_by_role("link", name="Upgrade to 1.1.0 available").click()
    added = page.locator(".diff-added li")
    assert added.count() == 2
    assert "cdn.shop.example" in page.locator(".diff-added").inner_text()
    assert page.locator(".diff-unchanged li").count() == 1
    shoot(page, "11-upgrade-diff")
    consent = page.get_by_label("I allow the new permissions above")
    page.get_by_role("button", name="Upgrade to 1.1.0").click()  # blocked: consent missing
    assert consent.evaluate("el => el.validity.valueMissing")
    page.get_by_label("I allow the new permissions above").check()
    page.get_by_role("button", name="Upgrade to 1.1.0").click()
    page.wait_for_url(re.compile(r"/workspaces/shop$"))
    assert "from 1.0.0 to 1.1.0" in page.locator(".flash").inner_text()

    page.get_by_role("link", name="Change version").click()
    assert page.locator(".diff-removed li").count() == 2  # rolling back drops them
    shoot(page, "12-rollback")
    page.get_by_role("button", name="Roll back to 1.0.0").click()
    page.wait_for_url(re.compile(r"/workspaces/shop$"))
    assert "Moved back" in page.locator(".flash").inner_text()

    page.get_by_role("button", name="Disable").click()
    assert page.locator(".badge-state-disabled").is_visible()
    shoot(page, "13-dashboard-disabled")
    page.get_by_role("button", name="Enable").click()
    assert page.locator(".badge-state:not(.badge-state-disabled)").is_visible()

    page.get_by_role("link", name="Uninstall").click()
    shoot(page, "14-uninstall-confirm")
    page.get_by_role("button", name="Uninstall Shop Sync").click()
    page.wait_for_url(re.compile(r"/workspaces/shop$"))
    assert page.get_by_role("heading", name="No gears installed yet").is_visible()
    shoot(page, "15-dashboard-empty")
    no_xss(page)

    page.set_viewport_size({"width": 375, "height": 800})
    for path, name in (("/", "16-mobile-home"), ("/gears/acme/shop-sync", "17-mobile-gear"),
                       ("/search?q=score", "18-mobile-search")):
        page.goto(url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} scrolls sideways at 375 px ({width} px)"
        shoot(page, name)


def test_hostile_readme_and_title_do_not_run(registry, page, shoot):
    page.goto(registry.url + "/gears/acme/hello")
    page.wait_for_load_state("networkidle")
    no_xss(page)
    assert page.locator(".readme script, .readme [onerror], .readme [onclick]").count() == 0
    assert page.locator('.readme a[href^="javascript"]').count() == 0
    assert page.locator("h1").inner_text().startswith("Hello <img")  # shown as text
    assert page.locator(".readme table").count() == 1
    for link in page.locator(".readme a[href]").all():
        assert "nofollow" in (link.get_attribute("rel") or "")
    shoot(page, "20-gear-hostile-readme")

    page.goto(registry.url + "/search?q=hello")
    no_xss(page)
    assert "<script>" in page.locator(".card-summary").first.inner_text()


def test_csrf_and_open_redirects_are_refused(registry, page):
    page.goto(registry.url + "/login?next=https://evil.example/steal")
    page.get_by_label("Email").fill(BIZ)
    page.get_by_label("Password").fill(BIZ_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url.startswith(registry.url + "/")

    for target in ("//evil.example", "/\\evil.example", "https:evil.example"):
        page.goto(registry.url + "/login?next=" + requests.utils.quote(target, safe=""))
        assert page.url.startswith(registry.url + "/")  # signed in: sent to a local page

    forged = page.request.post(registry.url + "/logout", form={"x": "1"})
    assert forged.status == 403
    page.goto(registry.url + "/workspaces/shop")
    assert page.url.endswith("/workspaces/shop")  # still signed in
