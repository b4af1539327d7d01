"""acme/exit-intent-offer, through the gears_sdk.testing fixtures."""

from datetime import date

import pytest

from gears_sdk.errors import GearsError


@pytest.fixture
def offer(gear, monkeypatch):
    monkeypatch.setattr(gear.module, "_today", lambda: date(2024, 3, 1))
    return gear


def test_personal_offer_with_defaults(offer, make_profile):
    profile = make_profile(attributes={"first_name": "Ada"}, traits={"top_category": "running"})
    result = offer.render(profile)
    html = result.html
    assert ('<h2 id="gear-exit-offer-title" class="gear-exit-offer__headline">'
            "Wait, Ada! Before you go...</h2>") in html
    assert 'role="dialog" aria-labelledby="gear-exit-offer-title"' in html
    assert "Take 10% off your next order." in html
    assert "Handpicked running deals are waiting for you." in html
    assert "<code>COMEBACK10</code>" in html
    assert '<time datetime="2024-03-08">8 March 2024</time>' in html
    assert 'href="https://shop.example.com/?discount=COMEBACK10"' in html
    assert result.data == {
        "headline": "Wait, Ada! Before you go...", "body": "Take 10% off your next order.",
        "category_line": "Handpicked running deals are waiting for you.",
        "discount_code": "COMEBACK10", "discount_text": "10% off",
        "expires_on": "2024-03-08", "expires_text": "8 March 2024",
        "cta_text": "Claim my discount", "cta_url": "https://shop.example.com/?discount=COMEBACK10"}


def test_anonymous_visitor_without_category(offer, make_profile):
    result = offer.render(make_profile())
    assert "Wait, there!" in result.html
    assert "gear-exit-offer__category" not in result.html
    assert result.data["category_line"] is None


def test_expiry_crosses_month_and_year(offer, make_profile, monkeypatch):
    monkeypatch.setattr(offer.module, "_today", lambda: date(2024, 12, 20))
    result = offer.render(make_profile(), config={"expiry_days": 14})
    assert result.data["expires_on"] == "2025-01-03"
    assert result.data["expires_text"] == "3 January 2025"


def test_expiry_defaults_to_today_in_utc(gear, make_profile):
    expires = date.fromisoformat(gear.render(make_profile()).data["expires_on"])
    assert 6 <= (expires - date.today()).days <= 8


def test_escapes_profile_and_config_values(offer, make_profile):
    profile = make_profile(attributes={"first_name": "<script>alert(1)</script>"},
                           traits={"top_category": '"><img src=x onerror=alert(1)>'})
    result = offer.render(profile, config={"discount_text": "<b>50%</b> off",
                                           "cta_url": "https://shop.example.com/?a=1&b=2"})
    html = result.html
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="https://shop.example.com/?a=1&amp;b=2&amp;discount=COMEBACK10"' in html


def test_content_overrides_and_custom_copy(offer, make_profile):
    profile = make_profile(attributes={"first_name": "Bo"}, traits={"top_category": "tents"})
    result = offer.render(profile, content={"headline": "{first_name}, one more thing"},
                          config={"category_line": "", "discount_text": "$15 off",
                                  "discount_code": "STAY-15"})
    assert result.data["headline"] == "Bo, one more thing"
    assert result.data["body"] == "Take $15 off your next order."
    assert result.data["category_line"] is None
    assert result.data["cta_url"] == "https://shop.example.com/?discount=STAY-15"


@pytest.mark.parametrize("config", [{"discount_code": "no spaces"}, {"expiry_days": 0},
                                    {"cta_url": "javascript:alert(1)"}])
def test_invalid_config_is_refused(offer, make_profile, config):
    with pytest.raises(GearsError, match=next(iter(config))):
        offer.render(make_profile(), config=config)
