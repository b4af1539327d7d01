"""Catalog pages through the test client: home, search with facets and paging, gear pages
with sanitized READMEs, and what anonymous visitors may not see."""

# ruff: noqa: F811  (fixtures imported from web_support are redefined as parameters)
from __future__ import annotations

import re

from marketplace.web.readme import render_markdown
from tests.marketplace.web_support import (  # noqa: F401
    CONFIG_SCHEMA,
    admin,
    business,
    publish_gear,
    signed_in,
)


def html(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    return resp.get_data(as_text=True)


def test_pages_share_one_accessible_layout(client, publish_gear):
    publish_gear("acme/hello")
    for path in ("/", "/search", "/gears/acme/hello", "/login"):
        resp = client.get(path)
        page = html(resp)
        assert '<html lang="en">' in page
        assert page.count("<h1") == 1
        assert 'class="skip-link" href="#content"' in page and 'id="content"' in page
        assert "style=" not in page and "<script>" not in page
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]


def test_home_lists_categories_newest_and_most_installed(client, publish_gear):
    publish_gear("acme/one", categories=["scoring", "email"])
    publish_gear("acme/two", categories=["scoring"], kind="extension")
    publish_gear("acme/hidden", approve=False, categories=["secret-cat"])
    page = html(client.get("/"))
    assert re.search(r"scoring <span class=\"count\">2</span>", page)
    assert "secret-cat" not in page and "acme/hidden" not in page
    assert "Newest gears" in page and "Most installed" in page


def test_search_facets_sort_and_pages(client, publish_gear):
    for i in range(23):
        publish_gear(f"acme/gear-{i:02d}", kind="extension" if i % 2 else "template",
                     summary=f"Recommends products, number {i}.",
                     categories=["recs"] if i < 5 else ["misc"])
    publish_gear("globex/other", summary="Something else entirely.")
    page = html(client.get("/search?q=recommend&sort=name"))
    assert "23 gears" in page
    assert page.count('class="card gear-card"') == 20 and "Page 1 of 2" in page
    assert "acme/gear-00" in page and "acme/gear-22" not in page
    page2 = html(client.get("/search?q=recommend&sort=name&page=2"))
    assert page2.count('class="card gear-card"') == 3 and "acme/gear-22" in page2
    facets = html(client.get("/search?q=recommend&kind=extension"))
    assert "11 gears" in facets
    assert re.search(r"Template <span class=\"count\">12</span>", facets)  # other kind still counted
    assert re.search(r"recs <span class=\"count\">2</span>", facets)
    assert "5 gears" in html(client.get("/search?category=recs"))
    assert "1 gear" in html(client.get("/search?publisher=globex"))
    assert "No gears match" in html(client.get("/search?q=zzzz"))
    hostile = html(client.get('/search?q=%22%29+OR+*+NEAR(+recommend&sort=bogus&page=x'))
    assert "No gears match" in hostile  # full-text syntax is never passed through


def test_gear_page_shows_versions_permissions_config_and_changelog(client, publish_gear):
    publish_gear("acme/sync", "1.0.0", "connector", config_schema=CONFIG_SCHEMA,
                 changelog="CHANGES.md", files={"CHANGES.md": "## 1.0.0\n\n- first\n"})
    publish_gear("acme/sync", "1.1.0", "connector", config_schema=CONFIG_SCHEMA)
    publish_gear("acme/sync", "2.0.0-beta.1", "connector", approve=False)
    page = html(client.get("/gears/acme/sync"))
    assert "Version 1.1.0" in page and "2.0.0-beta.1" not in page
    assert "Send requests to api.shop.example" in page
    assert "API URL" in page and "secret" in page and "Where the shop&#39;s API lives." in page
    old = html(client.get("/gears/acme/sync/1.0.0"))
    assert "newest is" in old and "Changelog" in old and "<li>first</li>" in old
    assert client.get("/gears/acme/sync/2.0.0-beta.1").status_code == 404
    assert client.get("/gears/acme/nope").status_code == 404


def test_yanked_version_is_badged_and_not_installable(client, publish_gear, session, admin):
    from marketplace.registry import states

    publish_gear("acme/y", "1.0.0")
    v2 = publish_gear("acme/y", "1.1.0")
    states.set_yanked(session, admin, v2, yanked=True, reason="broken defaults")
    page = html(client.get("/gears/acme/y/1.1.0"))
    assert "Yanked" in page and "broken defaults" in page and "cannot be installed" in page


def test_readme_is_sanitized():
    out = str(render_markdown(
        "# Title\n\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n\n"
        "[a](javascript:alert(1)) [b](https://ok.example) <a href=\"/x\" onclick=\"e()\">c</a>\n\n"
        "<iframe src=\"https://evil\"></iframe><style>p{}</style><p style=\"color:red\">s</p>"))
    assert "<script" not in out and "onerror" not in out and "onclick" not in out
    assert 'href="javascript' not in out and "<iframe" not in out and "<style" not in out
    assert "style=" not in out
    assert '<h2>Title</h2>' in out and "<h1" not in out
    assert 'href="https://ok.example" rel="nofollow noopener noreferrer"' in out


def test_readme_with_markup_reaches_the_page_escaped(client, publish_gear):
    publish_gear("acme/x", title="<b>Bold</b> title", summary="<script>x()</script>",
                 readme="Hi <script>x()</script>")
    page = html(client.get("/gears/acme/x"))
    assert "&lt;b&gt;Bold&lt;/b&gt; title" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<script>x()" not in page


def test_versions_for_another_engine_are_marked_and_not_offered(client, publish_gear, signed_in):
    publish_gear("acme/hello", "1.0.0", engine=">=1.0.0 <2.0.0")
    publish_gear("acme/hello", "2.0.0", engine=">=2.0.0 <3.0.0")
    from markupsafe import escape

    need = str(escape("needs engine >=2.0.0 <3.0.0; this engine is 1.0.0"))

    page = html(client.get("/gears/acme/hello"))  # the newest version, for engine 2
    assert f"This version cannot run here: it {need}." in page
    assert "Needs engine &gt;=2.0.0 &lt;3.0.0</span>" in page
    assert "See version 1.0.0, which runs here" in page
    assert "Install 2.0.0" not in page
    older = html(client.get("/gears/acme/hello/1.0.0"))
    assert "Install 1.0.0" in older and "cannot run here" not in older

    versions = {v["version"]: v for v in
                client.get("/api/v1/gears/acme/hello").get_json()["versions"]}
    assert versions["2.0.0"]["engine"] == ">=2.0.0 <3.0.0"
    assert (versions["1.0.0"]["engine_compatible"], versions["2.0.0"]["engine_compatible"]) \
        == (True, False)

    # the install flow starts at the newest version that runs here, and refuses the other
    # one up front with the reason rather than failing later
    start = html(signed_in.get("/workspaces/shop/install/acme/hello"))
    assert 'value="1.0.0" selected' in start and "cannot be installed here" not in start
    chosen = html(signed_in.get("/workspaces/shop/install/acme/hello?version=2.0.0"))
    assert f"Hello 2.0.0 cannot be installed here.</strong> acme/hello 2.0.0 {need}" in chosen


def _cards(page: str) -> dict[str, str]:
    """Each gear card's HTML by the gear's name."""
    cards = {}
    for card in page.split('<article class="card gear-card">')[1:]:
        name = re.search(r'<p class="card-name"><code>([^<]+)</code>', card)
        assert name, card
        cards[name.group(1)] = card.split("</article>", 1)[0]
    return cards


def _statements(app, get) -> int:
    """How many SQL statements ``get()`` runs (and that it answers 200)."""
    from sqlalchemy import event

    from marketplace.db import database

    seen = []

    def count(*_args):
        seen.append(1)

    engine = database(app).engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        html(get())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_catalog_cards_mark_a_newest_version_for_another_engine(app, client, publish_gear,
                                                                monkeypatch):
    publish_gear("acme/fits", engine=">=1.0.0 <2.0.0", summary="Recommends gifts.")
    publish_gear("acme/later", "1.0.0", engine=">=1.0.0 <2.0.0", summary="Recommends hats.")
    publish_gear("acme/later", "2.0.0", engine=">=2.0.0 <3.0.0", summary="Recommends hats.")
    publish_gear("acme/held", "1.0.0", engine=">=1.0.0 <2.0.0", summary="Recommends socks.")
    publish_gear("acme/held", "2.0.0", approve=False, engine=">=2.0.0 <3.0.0")
    badge = "Needs engine &gt;=2.0.0 &lt;3.0.0</span>"

    for path in ("/", "/search", "/search?q=recommends"):
        cards = _cards(html(client.get(path)))
        if path == "/":  # newest and most installed: each gear twice
            assert html(client.get(path)).count(badge) == 2
        assert badge in cards["acme/later"], path  # its newest listed version needs engine 2
        assert "badge-incompatible" not in cards["acme/fits"], path
        # an unapproved newer version is not listed: the card speaks of 1.0.0
        assert "badge-incompatible" not in cards["acme/held"], path

    # the same rule as the gear page, against the engine this server runs as
    monkeypatch.setitem(app.config, "ENGINE_VERSION", "2.1.0")
    cards = _cards(html(client.get("/search")))
    assert "Needs engine &gt;=1.0.0 &lt;2.0.0</span>" in cards["acme/fits"]
    assert "badge-incompatible" not in cards["acme/later"]
    gear_page = html(client.get("/gears/acme/fits"))
    assert "Needs engine &gt;=1.0.0 &lt;2.0.0</span>" in gear_page


def test_catalog_card_badges_cost_no_query_per_card(app, client, publish_gear):
    for i in range(2):
        publish_gear(f"acme/few-{i}", engine=">=2.0.0 <3.0.0")
    html(client.get("/"))  # first request: caches warmed
    few = (_statements(app, lambda: client.get("/search")),
           _statements(app, lambda: client.get("/")))
    for i in range(4):
        publish_gear(f"acme/more-{i}", "1.0.0", engine=">=1.0.0 <2.0.0")
        publish_gear(f"acme/more-{i}", "2.0.0", engine=">=2.0.0 <3.0.0")
    assert html(client.get("/search")).count("badge-incompatible") == 6
    many = (_statements(app, lambda: client.get("/search")),
            _statements(app, lambda: client.get("/")))
    assert many == few
