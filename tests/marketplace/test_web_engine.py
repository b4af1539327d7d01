"""The engine pages (profiles, segments, campaigns, decision preview) through the test client."""

# ruff: noqa: F811  (fixtures imported from web_support are redefined as parameters)
from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from tests.marketplace.engine.conftest import engine_app, engine_runtime  # noqa: F401
from tests.marketplace.web_support import (  # noqa: F401
    PASSWORD,
    admin,
    business,
    publish_gear,
    sign_in,
    signed_in,
)

BANNER = """\
import html

from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    name = html.escape(str((profile.get("attributes") or {}).get("first_name", "there")))
    return {"html": '<section class="hero"><h2>' + html.escape(content.get("headline", ""))
            + ", " + name + '</h2><script>alert(1)</script>'
            + '<img src="x" onerror="alert(2)"></section>',
            "data": {"greeted": name}}
"""
BASE = "/workspaces/shop"
PAGES = ["", "/profiles", "/profiles?user_id=ann", "/segments", "/segments/new",
         "/segments/buyers", "/segments/buyers/delete", "/campaigns", "/campaigns/new",
         "/campaigns/home", "/campaigns/home/delete", "/preview"]


def token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def post(client, path: str, data: dict[str, Any]) -> Any:
    page = client.get(path).get_data(as_text=True)
    return client.post(path, data={"csrf_token": token_of(page), **data})


@pytest.fixture
def engine_data(app, session, business, publish_gear) -> dict[str, Any]:
    """``shop`` with a profile, events, a segment, an installed template and a campaign."""
    from marketplace.accounts import get_workspace
    from marketplace.engine import setup
    from marketplace.engine.models import Event, Profile
    from marketplace.workspaces import install

    ws = get_workspace(session, "shop")
    from marketplace.blobs import get_blob_store
    from marketplace.registry.signing import keyring, sign_version

    version = publish_gear("acme/banner", "1.0.0", "template", files={"banner.py": BANNER})
    sign_version(session, version, keyring(app), get_blob_store(app))  # as approval does
    inst = install(session, ws, "acme/banner", config={}, consent=True, actor=business)
    from marketplace.db import utcnow

    now = utcnow()
    session.add(Profile(workspace_id=ws.id, user_id="ann", created_at=now, updated_at=now,
                        attributes={"first_name": "Ann", "country": "FR"},
                        traits={"rfm": {"segment": "loyal", "score": 9},
                                "favourites": ["shoes", "hats"]}))
    session.add(Event(workspace_id=ws.id, event_id="e1", user_id="ann", type="purchase",
                      name=None, properties={"amount": 42, "item_id": "sho-1"},
                      timestamp=now, received_at=now))
    setup.put_segment(session, ws, "buyers", {"title": "Buyers", "rule": {
        "event": "purchase", "at_least": 1, "within_days": 30}})
    setup.put_campaign(session, ws, "home", {
        "title": "Home hero", "placement": "home-hero", "priority": 2,
        "experiences": [{"name": "welcome", "segment": "buyers", "installation": inst.id,
                         "content": {"headline": "Hi"}}],
        "fallback": {"html": "<p>Welcome</p>", "data": {"default": True}}})
    session.commit()
    return {"ws": ws, "inst": inst.id}


def test_every_page_renders_for_a_member(signed_in, engine_data):
    for path in PAGES:
        resp = signed_in.get(BASE + path)
        assert resp.status_code == 200, (path, resp.status_code)
        page = resp.get_data(as_text=True)
        if not path.endswith("/delete"):  # confirmations stand alone, like uninstall's
            assert 'aria-label="Workspace sections"' in page, path
        assert "style=" not in page and "<script>" not in page, path


def test_pages_are_for_members_only(client, engine_data, make_user):
    assert client.get(BASE + "/segments").status_code == 302
    assert "/login" in client.get(BASE + "/profiles").headers["Location"]
    stranger = make_user(role="business", password="another password 123")
    sign_in(client, stranger.email, "another password 123")
    for path in PAGES:
        assert client.get(BASE + path).status_code == 404, path


def test_an_admin_sees_the_pages(client, engine_data, make_user):
    boss = make_user(role="admin", password="admin password 1234")
    sign_in(client, boss.email, "admin password 1234")
    assert client.get(BASE + "/segments").status_code == 200


def test_profile_lookup(signed_in, engine_data):
    page = signed_in.get(BASE + "/profiles?user_id=ann").get_data(as_text=True)
    assert "Ann" in page and "loyal" in page and "shoes, hats" in page
    assert "purchase" in page and "sho-1" in page
    assert re.search(r'/segments/buyers">buyers</a>', page)  # the profile is in the segment
    missing = signed_in.get(BASE + "/profiles?user_id=nobody")
    assert missing.status_code == 404 and "No profile for" in missing.get_data(as_text=True)
    start = signed_in.get(BASE + "/profiles").get_data(as_text=True)
    assert "user_id=ann" in start  # recently updated profiles are linked


def test_segment_list_counts_members(signed_in, engine_data):
    page = signed_in.get(BASE + "/segments").get_data(as_text=True)
    assert re.search(r'<td class="num">1</td>', page)
    assert "/campaigns/home" in page  # used by


def test_forms_refuse_a_missing_or_wrong_csrf_token(signed_in, engine_data, session):
    from marketplace.engine.models import Segment

    rule = '{"event": "view", "within_days": 7}'
    for data in ({}, {"csrf_token": "forged"}):
        resp = signed_in.post(BASE + "/segments/new", data={"name": "viewers", "rule": rule,
                                                            **data})
        assert resp.status_code == 403
        assert signed_in.post(BASE + "/segments/buyers/delete", data=data).status_code == 403
        assert signed_in.post(BASE + "/campaigns/home/delete", data=data).status_code == 403
        assert signed_in.post(BASE + "/preview", data={"placement": "home-hero",
                                                       "user_id": "ann", **data}
                              ).status_code == 403
    assert session.scalar(select(Segment).where(Segment.name == "viewers")) is None


def test_invalid_segment_shows_the_errors_inline_and_keeps_the_input(signed_in, engine_data):
    rule = '{"and": [{"field": "traits.x", "op": "~=", "value": 1}]}'
    resp = post(signed_in, BASE + "/segments/new", {"name": "odd", "title": "Odd", "rule": rule})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert re.search(r'id="f-rule-error"><li>\$\.rule\.and\[0\]\.op: ', page), page
    kept = re.search(r'<textarea id="rule"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert html.unescape(kept) == rule and 'value="Odd"' in page
    assert 'aria-invalid="true"' in page
    broken = post(signed_in, BASE + "/segments/new", {"name": "odd", "rule": '{"and": ['})
    assert broken.status_code == 422
    assert "is not valid JSON" in broken.get_data(as_text=True)
    bad_name = post(signed_in, BASE + "/segments/new", {"name": "Bad Name", "rule": "{}"})
    text = bad_name.get_data(as_text=True)
    assert 'id="f-name-error"' in text and 'id="f-rule-error"' in text


def test_valid_segment_persists_and_can_be_edited_and_deleted(signed_in, engine_data, session):
    from marketplace.engine.models import Segment

    rule = '{"field": "attributes.country", "op": "==", "value": "FR"}'
    resp = post(signed_in, BASE + "/segments/new", {"name": "french", "title": "In France",
                                                    "rule": rule})
    assert resp.status_code == 302 and resp.headers["Location"] == BASE + "/segments"
    row = session.scalar(select(Segment).where(Segment.name == "french"))
    assert row.title == "In France" and row.rule["value"] == "FR"
    again = post(signed_in, BASE + "/segments/new", {"name": "french", "rule": rule})
    assert again.status_code == 422 and "exists already" in again.get_data(as_text=True)
    edit = post(signed_in, BASE + "/segments/french", {"title": "French", "rule": rule})
    assert edit.status_code == 302
    session.expire_all()
    assert session.scalar(select(Segment).where(Segment.name == "french")).title == "French"
    # a segment a campaign uses is kept, with the reason
    in_use = post(signed_in, BASE + "/segments/buyers/delete", {})
    assert in_use.status_code == 302
    assert "used by the campaign" in signed_in.get(in_use.headers["Location"]).get_data(
        as_text=True)
    gone = post(signed_in, BASE + "/segments/french/delete", {})
    assert gone.status_code == 302
    session.expire_all()
    assert session.scalar(select(Segment).where(Segment.name == "french")) is None
    assert signed_in.get(BASE + "/segments/french").status_code == 404


def test_campaign_save_errors_and_delete(signed_in, engine_data, session):
    from marketplace.engine.models import Campaign

    page = signed_in.get(BASE + "/campaigns/new").get_data(as_text=True)
    assert engine_data["inst"] in page and "acme/banner" in page  # installed templates listed
    bad = post(signed_in, BASE + "/campaigns/new", {
        "name": "promo", "placement": "sidebar", "priority": "x",
        "experiences": '[{"name": "a", "segment": "ghosts", "installation": "nope"}]'})
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert 'id="f-priority-error"' in text
    assert bad.status_code == 422 and "is not valid" not in text
    fixed = post(signed_in, BASE + "/campaigns/new", {
        "name": "promo", "placement": "sidebar", "priority": "1",
        "experiences": '[{"name": "a", "segment": "ghosts", "installation": "nope"}]'})
    text = fixed.get_data(as_text=True)
    assert fixed.status_code == 422
    assert "$.experiences[0].segment: no segment" in html.unescape(text)
    assert "$.experiences[0].installation:" in html.unescape(text)
    assert 'value="sidebar"' in text
    experiences = json.dumps([{"name": "all", "segment": None,
                               "installation": engine_data["inst"], "content": {}}])
    ok = post(signed_in, BASE + "/campaigns/new", {
        "name": "promo", "title": "Promo", "placement": "sidebar", "priority": "5",
        "active": "1", "experiences": experiences, "fallback_html": "<p>Hi</p>",
        "fallback_data": '{"a": 1}'})
    assert ok.status_code == 302, ok.get_data(as_text=True)
    row = session.scalar(select(Campaign).where(Campaign.name == "promo"))
    assert (row.priority, row.active, row.fallback) == (5, True, {"html": "<p>Hi</p>",
                                                                  "data": {"a": 1}})
    paused = post(signed_in, BASE + "/campaigns/promo", {
        "title": "Promo", "placement": "sidebar", "priority": "5", "experiences": experiences})
    assert paused.status_code == 302
    session.expire_all()
    assert session.scalar(select(Campaign).where(Campaign.name == "promo")).active is False
    listing = signed_in.get(BASE + "/campaigns").get_data(as_text=True)
    assert "Paused" in listing and "sidebar" in listing
    assert 'href="/workspaces/shop/campaigns/promo/delete"' in listing  # from the list too
    confirm = signed_in.get(BASE + "/campaigns/promo/delete").get_data(as_text=True)
    assert "Its placement stops receiving its experiences" in confirm
    assert post(signed_in, BASE + "/campaigns/promo/delete", {}).status_code == 302
    session.expire_all()
    assert session.scalar(select(Campaign).where(Campaign.name == "promo")) is None


def test_preview_form_refuses_bad_input(signed_in, engine_data):
    page = signed_in.get(BASE + "/preview").get_data(as_text=True)
    assert '<option value="home-hero"' in page
    resp = post(signed_in, BASE + "/preview", {"placement": "home-hero", "user_id": "",
                                              "context": "[1]"})
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert 'id="f-user_id-error"' in text and 'id="f-context-error"' in text
    unknown = post(signed_in, BASE + "/preview", {"placement": "nowhere", "user_id": "ann"})
    assert unknown.status_code == 422 and 'id="f-placement-error"' in unknown.get_data(
        as_text=True)


def test_preview_runs_the_real_decision_in_the_sandbox(signed_in, engine_data, engine_app,
                                                       session):
    from marketplace.engine.models import Decision

    resp = post(signed_in, BASE + "/preview", {"placement": "home-hero", "user_id": "ann"})
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "Experience rendered" in page and "<code>welcome</code>" in page
    assert re.search(r"<code>acme/banner</code>.*?<code>gear_render</code>.*?>OK<", page, re.S)
    assert re.search(r"\d+\.\d ms", page)
    assert "&#34;greeted&#34;: &#34;Ann&#34;" in page  # the returned data, as JSON
    frame = re.search(r'<iframe class="preview-frame" sandbox="" [^>]*srcdoc="([^"]*)"', page)
    assert frame, "the HTML is shown in a sandboxed frame without allow-scripts"
    srcdoc = html.unescape(frame.group(1))
    assert "<h2>Hi, Ann</h2>" in srcdoc
    assert "<script" not in srcdoc and "onerror" not in srcdoc  # sanitized by the engine
    assert "<script>alert" not in page and "onerror=" not in page
    # bob is in no segment: the fallback, with no gear called
    fallback = post(signed_in, BASE + "/preview", {"placement": "home-hero", "user_id": "bob"})
    text = fallback.get_data(as_text=True)
    assert "Fallback shown" in text and "There is no profile for" in text
    assert "&lt;p&gt;Welcome&lt;/p&gt;" in text and "No gear was called" in text
    session.expire_all()
    assert session.query(Decision).count() == 2  # previews are logged like any decision


def test_json_fields_meet_the_input_contract(signed_in, engine_data):
    """A textarea's JSON is parsed by the one validator: too deep or not finite is a form
    error at its path, never a 500."""
    deep = '{"and": [' + "[" * 5000 + "]" * 5000 + "]}"
    resp = post(signed_in, BASE + "/segments/new", {"name": "deep", "rule": deep})
    assert resp.status_code == 422 and 'id="f-rule-error"' in resp.get_data(as_text=True)
    resp = post(signed_in, BASE + "/segments/new",
                {"name": "inf", "rule": '{"field": "traits.x", "op": "gt", "value": 1e400}'})
    assert resp.status_code == 422
    assert "$.rule.value" in html.unescape(resp.get_data(as_text=True))


def test_campaigns_have_one_order_everywhere(signed_in, engine_data, make_token, business):
    """The list page, the API and a decision agree: by placement, then priority (highest
    first), then name; so a placement's first active campaign listed is the one that
    answers its decisions."""
    experiences = json.dumps([{"name": "all", "segment": "buyers",
                               "installation": engine_data["inst"], "content": {}}])
    for name, priority in (("zeta", "2"), ("alpha", "2"), ("low", "1"), ("aside", "9")):
        saved = post(signed_in, BASE + "/campaigns/new", {
            "name": name, "placement": "side" if name == "aside" else "home-hero",
            "priority": priority, "active": "1", "experiences": experiences})
        assert saved.status_code == 302, saved.get_data(as_text=True)
    expected = ["alpha", "home", "zeta", "low", "aside"]  # home-hero < side; 2, 2, 2, 1
    page = signed_in.get(BASE + "/campaigns").get_data(as_text=True)
    listed = re.findall(r'/campaigns/([a-z-]+)"><code>', page)
    assert listed == expected
    api = {"Authorization": f"Bearer {make_token(business, ['workspace:shop'])}"}
    answer = signed_in.get("/engine/v1/workspaces/shop/campaigns", headers=api).get_json()
    assert [c["name"] for c in answer["campaigns"]] == expected
    # "home" was created first, but between equal priorities the first name answers
    decided = signed_in.post("/engine/v1/workspaces/shop/decide", headers=api,
                             json={"user_id": "bob", "placement": "home-hero"}).get_json()
    assert decided["campaign"] == "alpha" and decided["fallback"] is True
    preview = post(signed_in, BASE + "/preview", {"placement": "home-hero", "user_id": "bob"})
    assert "<code>alpha</code>" in preview.get_data(as_text=True)
