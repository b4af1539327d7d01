"""The engine pages in headless Chromium against a real server seeded with the demo:
a profile lookup, the segments list, a campaign's edit page and a decision preview whose
HTML renders inside a sandboxed frame under the strict CSP. Screenshots land in
``<test_output_dir>/screenshots/engine-*.png``."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_admin import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


def test_engine_pages(live_registry, page, shoot):
    reg = live_registry()
    seeded = reg.marketplace("seed-demo").stdout
    match = re.search(r"biz@gears\.local with password (\S+)", seeded)
    assert match, seeded
    url = reg.start()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    sign_in(page, url, "biz@gears.local", match.group(1))

    page.goto(f"{url}/workspaces/demo")
    nav = page.get_by_role("navigation", name="Workspace sections")
    assert nav.get_by_role("link", name="Gears").get_attribute("aria-current") == "page"
    shoot(page, "engine-01-dashboard")
    nav.get_by_role("link", name="Profiles").click()
    page.get_by_label("User id").fill("alice")
    page.get_by_role("button", name="Look up").click()
    assert page.get_by_role("heading", name="alice").is_visible()
    assert page.get_by_text("Alice", exact=True).first.is_visible()
    assert page.get_by_role("heading", name="Latest events").is_visible()
    shoot(page, "engine-02-profile-alice")

    nav.get_by_role("link", name="Segments").click()
    assert page.get_by_role("link", name="buyers").is_visible()
    assert page.get_by_role("link", name="browsers").is_visible()
    shoot(page, "engine-03-segments")

    page.get_by_role("link", name="buyers").click()
    page.get_by_label("Rule (JSON)").fill('{"and": [{"field": "traits.x", "op": "~="}]}')
    page.get_by_role("button", name="Save segment").click()
    assert page.get_by_text("$.rule.and[0].op:").is_visible()
    shoot(page, "engine-04-segment-error")

    nav.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="home", exact=True).click()
    assert page.get_by_role("heading", name="Installed templates").is_visible()
    assert "welcome-back" in page.get_by_label("Experiences (JSON)").input_value()
    shoot(page, "engine-05-campaign-edit")

    page.get_by_role("link", name="Preview", exact=True).first.click()
    page.get_by_label("Placement").select_option("home-hero")
    page.get_by_label("User id").fill("bob")
    page.get_by_role("button", name="Run decision").click()
    assert page.get_by_role("heading", name=re.compile("What bob gets")).is_visible()
    assert page.get_by_text("Experience rendered").is_visible()
    frame = page.frame_locator("iframe.preview-frame")
    assert "Bob" in frame.locator("body").inner_text()
    shoot(page, "engine-06-preview-bob")

    assert not page.dialogs  # type: ignore[attr-defined]
    assert not [p for p in problems if "Content Security Policy" in p], problems
