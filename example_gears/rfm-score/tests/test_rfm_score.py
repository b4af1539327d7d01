"""acme/rfm-score, through the gears_sdk.testing fixtures."""

import pytest

from gears_sdk.errors import GearsError


def _purchase(make_event, day, amount):
    return make_event("purchase", timestamp=f"2024-03-{day:02d}T12:00:00Z", amount=amount)


def test_first_purchase_makes_a_new_customer(gear, make_event, make_profile):
    patch = gear.on_event(_purchase(make_event, 10, 40.0), make_profile())
    rfm = patch.set["traits.rfm"]
    assert rfm == {"recency_days": 0, "frequency": 1, "monetary": 40.0,
                   "r": 5, "f": 1, "m": 1, "score": "511", "segment": "new"}
    assert list(patch.set) == ["traits.rfm"]


def test_frequent_big_spender_is_a_champion(gear, make_event, make_profile):
    history = [_purchase(make_event, d, 120.0) for d in range(1, 11)]
    patch = gear.on_event(_purchase(make_event, 12, 100.0), make_profile(events=history))
    rfm = patch.set["traits.rfm"]
    assert rfm["frequency"] == 11 and rfm["monetary"] == 1300.0
    assert rfm["score"] == "555" and rfm["segment"] == "champion"


def test_non_purchase_events_measure_recency(gear, make_event, make_profile):
    history = [_purchase(make_event, 1, 60.0), _purchase(make_event, 2, 60.0)]
    view = make_event("view", timestamp="2024-05-01T12:00:00Z")
    rfm = gear.on_event(view, make_profile(events=history)).set["traits.rfm"]
    assert rfm["recency_days"] == 60 and rfm["r"] == 3 and rfm["f"] == 2


def test_window_is_configurable(gear, make_event, make_profile):
    history = [_purchase(make_event, 1, 60.0)]
    view = make_event("view", timestamp="2024-03-20T00:00:00Z")
    assert gear.on_event(view, make_profile(events=history), config={"window_days": 7}) is None
    patch = gear.on_event(view, make_profile(events=history, traits={"rfm": {"score": "111"}}),
                          config={"window_days": 7})
    assert patch.unset == ["traits.rfm"]


def test_unchanged_score_returns_no_patch(gear, make_event, make_profile):
    purchase = _purchase(make_event, 10, 40.0)
    rfm = gear.on_event(purchase, make_profile()).set["traits.rfm"]
    profile = make_profile(events=[purchase], traits={"rfm": rfm})
    assert gear.on_event(purchase, profile) is None


def test_ignores_bad_amounts_and_timestamps(gear, make_event, make_profile):
    history = [make_event("purchase", timestamp="not a date", amount=10),
               make_event("purchase", timestamp="2024-03-01T00:00:00Z", amount="lots")]
    rfm = gear.on_event(_purchase(make_event, 2, 5.0), make_profile(events=history))
    assert rfm.set["traits.rfm"]["frequency"] == 2
    assert rfm.set["traits.rfm"]["monetary"] == 5.0


def test_event_without_timestamp_is_logged(gear, make_event, make_profile):
    event = make_event("purchase", amount=1)
    del event["timestamp"]
    assert gear.on_event(event, make_profile()) is None
    assert gear.ctx.log.messages("warning")


def test_window_days_must_be_positive(gear, make_event, make_profile):
    with pytest.raises(GearsError, match="window_days"):
        gear.on_event(make_event("view"), make_profile(), config={"window_days": 0})
