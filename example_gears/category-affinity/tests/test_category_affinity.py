"""acme/category-affinity, through the gears_sdk.testing fixtures."""

import pytest

from gears_sdk.errors import GearsError


def _apply(profile, patch):
    """The profile after the engine applies ``patch`` (only this gear's traits)."""
    traits = dict(profile["traits"])
    for path, value in patch.set.items():
        traits[path.split(".", 1)[1]] = value
    return {**profile, "traits": traits}


def _run(gear, make_profile, events, config=None):
    profile = make_profile()
    for event in events:
        patch = gear.on_event(event, profile, config=config)
        if patch is not None:
            profile = _apply(profile, patch)
    return profile["traits"]


def test_first_view_creates_the_traits(gear, make_event, make_profile):
    patch = gear.on_event(make_event("view", timestamp="2024-03-01T10:00:00Z", category="running"),
                          make_profile())
    assert patch.set == {"traits.affinity": {"running": 1.0},
                         "traits.affinity_as_of": "2024-03-01T10:00:00Z",
                         "traits.top_category": "running"}


def test_weights_by_event_type_and_decay_by_recency(gear, make_event, make_profile):
    traits = _run(gear, make_profile, [
        make_event("view", timestamp="2024-03-01T00:00:00Z", category="running"),
        make_event("purchase", timestamp="2024-03-01T00:00:00Z", category="running"),
        make_event("click", timestamp="2024-03-29T00:00:00Z", category="outdoor"),
        make_event("click", timestamp="2024-03-29T00:00:00Z", category="outdoor"),
    ])
    assert traits["affinity"] == {"outdoor": 4.0, "running": 1.5}
    assert traits["top_category"] == "outdoor"
    assert traits["affinity_as_of"] == "2024-03-29T00:00:00Z"


def test_late_events_count_as_if_in_order(gear, make_event, make_profile):
    early = make_event("purchase", timestamp="2024-03-01T00:00:00Z", category="tents")
    late = make_event("view", timestamp="2024-03-15T00:00:00Z", category="running")
    in_order = _run(gear, make_profile, [early, late])
    reversed_ = _run(gear, make_profile, [late, early])
    assert in_order["affinity"] == reversed_["affinity"] == {"tents": 2.5, "running": 1.0}
    assert reversed_["affinity_as_of"] == "2024-03-15T00:00:00Z"


def test_keeps_only_top_n_and_drops_faded_scores(gear, make_event, make_profile):
    events = [make_event("view", timestamp="2024-03-01T00:00:00Z", category=f"c{i}")
              for i in range(5)]
    events.append(make_event("purchase", timestamp="2024-03-01T00:00:00Z", category="c4"))
    traits = _run(gear, make_profile, events, config={"top_n": 2})
    assert list(traits["affinity"]) == ["c4", "c3"]
    # a year later, everything but the new category has faded below 0.01
    traits = _run(gear, make_profile, [*events, make_event(
        "view", timestamp="2025-03-01T00:00:00Z", category="new")])
    assert traits["affinity"] == {"new": 1.0}


def test_ignored_events(gear, make_event, make_profile):
    profile = make_profile()
    assert gear.on_event(make_event("view", category=""), profile) is None
    assert gear.on_event(make_event("view"), profile) is None
    assert gear.on_event(make_event("signup", category="running"), profile) is None
    assert gear.on_event(make_event("view", category=["a", "b"]), profile) is None
    assert gear.on_event(make_event("view", timestamp="yesterday", category="x"), profile) is None
    assert gear.ctx.log.messages("warning")


def test_custom_weights(gear, make_event, make_profile):
    config = {"weights": {"wishlist": 4}}
    patch = gear.on_event(make_event("wishlist", category=" garden "), make_profile(),
                          config=config)
    assert patch.set["traits.affinity"] == {"garden": 4.0}
    assert gear.on_event(make_event("view", category="garden"), make_profile(),
                         config=config) is None


def test_sees_only_the_event_properties_it_declares(gear, make_event, make_profile):
    """gear.json reads the ``category`` property only: another one never reaches the gear."""
    config = {"category_property": "dept"}
    assert gear.on_event(make_event("view", dept="garden"), make_profile(), config=config) is None


def test_builds_on_the_stored_scores(gear, make_event, make_profile):
    profile = make_profile(traits={"affinity": {"tents": 2.0},
                                   "affinity_as_of": "2024-03-01T00:00:00Z",
                                   "email_score": 9})
    patch = gear.on_event(make_event("view", timestamp="2024-03-01T00:00:00Z", category="tents"),
                          profile)
    assert patch.set["traits.affinity"] == {"tents": 3.0}


def test_half_life_must_be_positive(gear, make_event, make_profile):
    with pytest.raises(GearsError, match="half_life_days"):
        gear.on_event(make_event("view", category="x"), make_profile(), config={"half_life_days": 0})
