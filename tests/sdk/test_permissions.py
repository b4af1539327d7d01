"""The permission rules shared by the runtime and gears_sdk.testing."""

from gears_sdk.permissions import field_allowed, filter_profile, host_allowed, patch_violations

PROFILE = {
    "id": "u1",
    "attributes": {"email": "a@example.com", "country": "FR"},
    "traits": {"rfm": {"score": "555", "segment": "champion"}, "ltv": 10},
    "events": [{"type": "view"}],
}


def test_filter_profile_keeps_only_declared_fields():
    assert filter_profile(PROFILE, []) == {}
    assert filter_profile(PROFILE, ["attributes.country", "traits.rfm.segment"]) == {
        "attributes": {"country": "FR"}, "traits": {"rfm": {"segment": "champion"}}}
    assert filter_profile(PROFILE, ["traits.*"]) == {"traits": PROFILE["traits"]}
    assert filter_profile(PROFILE, ["events", "id"]) == {"events": [{"type": "view"}], "id": "u1"}
    assert filter_profile(PROFILE, ["traits.missing"]) == {}


def test_filter_profile_returns_a_copy():
    out = filter_profile(PROFILE, ["traits.rfm"])
    out["traits"]["rfm"]["score"] = "111"
    assert PROFILE["traits"]["rfm"]["score"] == "555"


def test_writes_must_lie_at_or_below_a_declared_field():
    assert field_allowed("traits.rfm", ["traits.rfm"])
    assert field_allowed("traits.rfm.score", ["traits.rfm"])
    assert field_allowed("traits.anything", ["traits.*"])
    assert not field_allowed("traits", ["traits.rfm"])
    assert not field_allowed("traits.rfmx", ["traits.rfm"])
    assert patch_violations(["traits.rfm", "attributes.email"], ["traits.rfm"]) == [
        "attributes.email"]


def test_host_rules():
    assert host_allowed("https://API.example.com/x", ["api.example.com"])
    assert host_allowed("http://api.example.com:80/x", ["api.example.com"])
    assert not host_allowed("https://api.example.com.evil.com/", ["api.example.com"])
    assert not host_allowed("https://user@evil.com/", ["api.example.com"])
    assert not host_allowed("not a url", ["api.example.com"])
