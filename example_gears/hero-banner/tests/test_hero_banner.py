"""acme/hero-banner, through the gears_sdk.testing fixtures."""

import pytest

from gears_sdk.errors import GearsError


def test_greets_by_first_name_with_defaults(gear, make_profile):
    result = gear.render(make_profile(attributes={"first_name": "Ada"}))
    assert '<h1 class="gear-hero__headline">Welcome back, Ada!</h1>' in result.html
    assert 'href="https://shop.example.com/"' in result.html
    assert result.data["theme"] == "light"
    assert not result.data["vip"]


def test_anonymous_visitor(gear, make_profile):
    result = gear.render(make_profile())
    assert "Welcome back, there!" in result.html


def test_escapes_profile_and_config_values(gear, make_profile):
    profile = make_profile(attributes={"first_name": '<img src=x onerror="alert(1)">'},
                           traits={"preferred_category": "<b>shoes</b>"})
    result = gear.render(profile, config={"cta_text": "Go & buy"})
    assert "<img" not in result.html and "<b>" not in result.html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in result.html
    assert "Go &amp; buy" in result.html


def test_links_preferred_category_and_badges_vips(gear, make_profile):
    profile = make_profile(traits={"preferred_category": "running shoes",
                                   "rfm": {"segment": "champion", "score": "555"}})
    result = gear.render(profile)
    assert 'href="https://shop.example.com/?category=running+shoes"' in result.html
    assert "New in running shoes" in result.html
    assert "gear-hero__badge" in result.html


def test_only_declared_profile_fields_reach_the_gear(gear, make_profile):
    # rfm.score is not declared (only rfm.segment is), so it must not leak into data
    profile = make_profile(attributes={"first_name": "Ada", "email": "ada@example.com"},
                           traits={"rfm": {"segment": "new", "score": "511"}})
    result = gear.render(profile)
    assert "ada@example.com" not in result.html


def test_theme_and_content_overrides(gear, make_profile):
    result = gear.render(make_profile(attributes={"first_name": "Bo"}),
                         content={"headline": "Hi {first_name}, sale today"},
                         config={"theme": "dark", "cta_url": "https://shop.example.com/?ref=hero"})
    assert 'data-theme="dark"' in result.html
    assert "Hi Bo, sale today" in result.html
    assert result.data["cta_url"] == "https://shop.example.com/?ref=hero"


def test_rejects_a_theme_outside_the_enum(gear, make_profile):
    with pytest.raises(GearsError, match="theme"):
        gear.render(make_profile(), config={"theme": "neon"})


def test_rejects_a_javascript_link(gear, make_profile):
    with pytest.raises(GearsError, match="cta_url"):
        gear.render(make_profile(), config={"cta_url": "javascript:alert(1)"})


def test_top_category_from_the_affinity_gear_wins(gear, make_profile):
    profile = make_profile(traits={"top_category": "bags", "preferred_category": "hats"})
    assert "bags" in gear.render(profile).html
