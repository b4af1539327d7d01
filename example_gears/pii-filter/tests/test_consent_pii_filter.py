"""acme/consent-pii-filter, through the gears_sdk.testing fixtures."""

import pytest

from gears_sdk.errors import GearsError
from gears_sdk.permissions import filter_profile

MANAGED = ["traits.affinity", "traits.affinity_as_of", "traits.top_category",
           "traits.recent_views", "traits.purchased_items", "traits.rfm"]


def _consent(value):
    return {"consent": {"marketing": value}}


@pytest.mark.parametrize(("attributes", "status"), [
    ({}, "unknown"), (_consent(False), "denied"), (_consent("yes"), "unknown"),
    ({"consent": {"analytics": True}}, "unknown"),
])
def test_missing_or_refused_consent_clears_marketing_traits(gear, make_event, make_profile,
                                                            attributes, status):
    profile = make_profile(attributes=attributes, traits={"top_category": "running"})
    patch = gear.on_event(make_event("view"), profile)
    assert patch.set == {"traits.consent_status": status}
    assert patch.unset == MANAGED


def test_unconsented_traits_are_cleared_on_every_event(gear, make_event, make_profile):
    profile = make_profile(traits={"consent_status": "unknown"})
    patch = gear.on_event(make_event("view"), profile)
    assert patch.set == {} and patch.unset == MANAGED


def test_granted_consent_keeps_traits(gear, make_event, make_profile):
    profile = make_profile(attributes=_consent(True))
    assert gear.on_event(make_event("view"), profile).set == {"traits.consent_status": "granted"}
    profile["traits"]["consent_status"] = "granted"
    assert gear.on_event(make_event("view"), profile) is None


def test_managed_traits_are_configurable_within_the_permission(gear, make_event, make_profile):
    patch = gear.on_event(make_event("view"), make_profile(),
                          config={"managed_traits": ["top_category"]})
    assert patch.unset == ["traits.top_category"]
    with pytest.raises(GearsError, match="managed_traits"):
        gear.on_event(make_event("view"), make_profile(), config={"managed_traits": ["email"]})


def test_only_the_consent_flag_is_read(gear, make_profile):
    profile = make_profile(attributes={"email": "ada@example.com", "consent": {"marketing": True,
                                                                              "ip": "1.2.3.4"}},
                           traits={"affinity": {"x": 1}})
    filtered = filter_profile(profile, gear.manifest.permissions.profile.read)
    assert filtered == {"attributes": {"consent": {"marketing": True}}}


def _granted(make_profile):
    return make_profile(attributes=_consent(True), traits={"consent_status": "granted"})


def test_flags_pii_in_event_properties(gear, make_event, make_profile):
    event = make_event("checkout", comment="mail me at ada@example.com",
                       payment={"note": "card 4111 1111 1111 1111 exp 12/27"},
                       contacts=["+44 20 7946 0958"])
    patch = gear.on_event(event, _granted(make_profile))
    assert patch.increment == {"traits.pii_flags.card": 1, "traits.pii_flags.email": 1,
                               "traits.pii_flags.phone": 1, "traits.pii_flags.events": 1}
    assert patch.set == {} and patch.unset == []
    [warning] = gear.ctx.log.messages("warning")
    assert "payment.note" in warning and "contacts[0]" in warning and "comment" in warning
    assert "4111" not in warning and "ada@" not in warning


@pytest.mark.parametrize("text", [
    "order 1234567890123456",        # 16 digits, fails Luhn
    "sku 4111111111111112",          # one digit off a valid card
    "order id 5551234567",           # bare digits: an id, not a phone
    "2024-03-01T10:00:00Z",          # a timestamp
    "price 1,299.00 for 3 items",
    "user@localhost",
])
def test_ordinary_values_are_not_flagged(gear, make_event, make_profile, text):
    assert gear.on_event(make_event("view", note=text), _granted(make_profile)) is None


@pytest.mark.parametrize(("value", "kind"), [
    ("5500-0000-0000-0004", "card"), (4012888888881881, "card"), ("(555) 010-2345", "phone"),
    ("+15550102345", "phone"), ("First.Last+tag@mail.example.co.uk", "email"),
])
def test_detects_each_kind(gear, make_event, make_profile, value, kind):
    patch = gear.on_event(make_event("view", v=value), _granted(make_profile))
    assert f"traits.pii_flags.{kind}" in patch.increment


def test_ignored_properties_and_disabled_kinds(gear, make_event, make_profile):
    event = make_event("signup", email="ada@example.com", phone="+44 20 7946 0958")
    config = {"ignore_properties": ["email"], "detect": ["email", "card"]}
    assert gear.on_event(event, _granted(make_profile), config=config) is None


def test_luhn(gear):
    assert gear.module.luhn_valid("79927398713")
    assert not gear.module.luhn_valid("79927398710")
