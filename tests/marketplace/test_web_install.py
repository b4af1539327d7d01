"""The install, configure, upgrade, disable and uninstall pages through the test client."""

# ruff: noqa: F811  (fixtures imported from web_support are redefined as parameters)
from __future__ import annotations

import re

import pytest

from marketplace import services
from tests.marketplace.web_support import (  # noqa: F401
    CONFIG_SCHEMA,
    admin,
    business,
    publish_gear,
    signed_in,
)

INSTALL = "/workspaces/shop/install/acme/sync"


def token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.fixture
def sync(publish_gear):
    publish_gear("acme/sync", "1.0.0", "connector", config_schema=CONFIG_SCHEMA)
    publish_gear("acme/sync", "1.1.0", "connector", config_schema=CONFIG_SCHEMA,
                 permissions={"network": ["api.shop.example", "cdn.shop.example"]})


def install(client, **form):
    page = client.get(INSTALL + "?version=1.0.0").get_data(as_text=True)
    data = {"csrf_token": token_of(page), "version": "1.0.0", "step": "config",
            "c/api_url": "https://shop.test", "c/window_days": "30", **form}
    consent = client.post(INSTALL, data=data)
    assert consent.status_code == 200, consent.get_data(as_text=True)
    page = consent.get_data(as_text=True)
    pending = re.search(r'name="pending" value="([^"]+)"', page).group(1)
    done = client.post(INSTALL, data={"csrf_token": token_of(page), "step": "consent",
                                      "version": "1.0.0", "pending": pending, "consent": "yes",
                                      "capability": "network:api.shop.example"})
    assert done.status_code == 302 and done.headers["Location"] == "/workspaces/shop"
    dash = client.get("/workspaces/shop").get_data(as_text=True)
    assert "is installed in shop" in dash
    return re.search(r"/installations/([0-9a-f]{32})", dash).group(1)


def test_anonymous_and_strangers_cannot_reach_a_workspace(client, sync, make_user):
    assert client.get(INSTALL).status_code == 302
    from tests.marketplace.web_support import sign_in

    stranger = make_user(role="business", password="another password 123")
    sign_in(client, stranger.email, "another password 123")
    assert client.get("/workspaces/shop").status_code == 404
    assert client.get(INSTALL).status_code == 404


def test_invalid_config_is_shown_inline_and_input_kept(signed_in, sync):
    client = signed_in
    page = client.get(INSTALL).get_data(as_text=True)
    assert 'name="c/window_days"' in page and 'value="90"' in page
    assert 'type="password"' in page and 'type="url"' in page and "<fieldset" in page
    resp = client.post(INSTALL, data={"csrf_token": token_of(page), "version": "1.0.0",
                                      "step": "config", "c/api_url": "nope",
                                      "c/window_days": "abc", "c/weights": "1\nx",
                                      "c/api_key": "sk-typed-secret"})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert re.search(r'id="f-window_days-error"><li>must be a whole number', page)
    assert re.search(r'id="f-api_url-error"><li>must be a URL', page)
    assert "item 2: must be a number" in page
    assert 'value="nope"' in page and 'value="abc"' in page
    assert "sk-typed-secret" not in page
    assert 'aria-invalid="true"' in page


def test_install_with_consent_then_manage(signed_in, sync, session):
    client = signed_in
    inst = install(client, **{"c/api_key": "sk-very-secret"})
    dash = client.get("/workspaces/shop").get_data(as_text=True)
    assert "Upgrade to 1.1.0 available" in dash
    assert "Test connection" in dash and "sk-very-secret" not in dash

    base = f"/workspaces/shop/installations/{inst}"
    settings = client.get(base + "/configure").get_data(as_text=True)
    assert "Leave blank to keep the current value" in settings
    assert "sk-very-secret" not in settings and 'value="30"' in settings
    saved = client.post(base + "/configure", data={"csrf_token": token_of(settings),
                                                  "c/api_url": "https://shop.test",
                                                  "c/window_days": "45"})
    assert saved.status_code == 302
    from marketplace.workspaces import Installation, installation_secrets

    session.expire_all()
    row = session.get(Installation, inst)
    assert row.config["window_days"] == 45
    assert installation_secrets(row) == {"api_key": "sk-very-secret"}

    upgrade = client.get(base + "/upgrade").get_data(as_text=True)
    assert "New permissions (1)" in upgrade and "cdn.shop.example" in upgrade
    refused = client.post(base + "/upgrade", data={"csrf_token": token_of(upgrade),
                                                   "version": "1.1.0"})
    assert refused.status_code == 422 and "Tick the box" in refused.get_data(as_text=True)
    done = client.post(base + "/upgrade", data={"csrf_token": token_of(upgrade),
                                                "version": "1.1.0", "consent": "yes",
                                                "capability": "network:cdn.shop.example"})
    assert done.status_code == 302
    back = client.get(base + "/upgrade").get_data(as_text=True)
    assert "Roll back to 1.0.0" in back and "No longer needed (1)" in back
    assert client.post(base + "/upgrade", data={"csrf_token": token_of(back),
                                                "version": "1.0.0"}).status_code == 302

    disabled = client.post(base + "/enabled", data={"csrf_token": token_of(back),
                                                    "enabled": "0"}, follow_redirects=True)
    assert "is disabled" in disabled.get_data(as_text=True)

    tested = client.post(base + "/test", data={"csrf_token": token_of(back)},
                         follow_redirects=True)
    # the engine's connector check ran: a disabled installation is not called
    assert "gear_check: the installation is disabled" in tested.get_data(as_text=True)

    confirm = client.get(base + "/uninstall").get_data(as_text=True)
    assert "Uninstall" in confirm and "stored secrets are deleted" in confirm
    gone = client.post(base + "/uninstall", data={"csrf_token": token_of(confirm)},
                       follow_redirects=True).get_data(as_text=True)
    assert "was uninstalled" in gone and "No gears installed yet" in gone


def test_connection_test_shows_the_engines_answer(signed_in, sync, monkeypatch):
    inst = install(signed_in)
    asked = []
    monkeypatch.setattr(services.engine(signed_in.application), "check_connection",
                        lambda ws, i: asked.append((ws, i)) or {
                            "ok": False, "message": "the shop refused the API key"})
    page = signed_in.get("/workspaces/shop").get_data(as_text=True)
    resp = signed_in.post(f"/workspaces/shop/installations/{inst}/test",
                          data={"csrf_token": token_of(page)}, follow_redirects=True)
    assert "the shop refused the API key" in resp.get_data(as_text=True)
    assert asked == [("shop", inst)]


def test_consent_token_cannot_be_forged(signed_in, sync):
    page = signed_in.get(INSTALL).get_data(as_text=True)
    resp = signed_in.post(INSTALL, data={"csrf_token": token_of(page), "step": "consent",
                                         "version": "1.0.0", "pending": "forged",
                                         "consent": "yes"})
    assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)


def test_the_card_and_page_show_the_state_not_a_green_running(signed_in, sync, session, admin):
    """A quarantined gear's card says so (red, with why and what to do), never "Running";
    before its first call it is waiting; both pages read the same state."""
    from marketplace.models import Gear, GearVersion
    from marketplace.registry import states

    client = signed_in
    inst = install(client, **{"c/api_key": "sk-1"})
    dash = client.get("/workspaces/shop").get_data(as_text=True)
    assert "badge-state-waiting" in dash and "Waiting for its first call" in dash
    page = client.get(f"/workspaces/shop/installations/{inst}").get_data(as_text=True)
    assert "badge-state-waiting" in page and "No calls recorded yet" in page

    version = session.query(GearVersion).join(Gear).filter(
        Gear.name == "acme/sync", GearVersion.version == "1.0.0").one()
    states.set_quarantined(session, admin, version, quarantined=True,
                           reason="it sends secrets elsewhere")
    session.commit()
    for html in (client.get("/workspaces/shop").get_data(as_text=True),
                 client.get(f"/workspaces/shop/installations/{inst}").get_data(as_text=True)):
        assert "badge-state-quarantined" in html and "Running" not in html
        assert "it sends secrets elsewhere" in html
        assert "Change version to 1.1.0" not in html and "Change to version 1.1.0" in html
