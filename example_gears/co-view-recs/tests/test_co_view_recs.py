"""acme/co-view-recs, through the gears_sdk.testing fixtures."""

import json

import pytest


class Engine:
    """Feeds events through the gear and applies its patches, per visitor."""

    def __init__(self, gear, make_event, make_profile, config=None):
        self.gear, self.make_event, self.make_profile = gear, make_event, make_profile
        self.config = config
        self.traits = {}

    def profile(self, user):
        return self.make_profile(user, traits=self.traits.get(user, {}))

    def event(self, user, type_, item, minute):
        event = self.make_event(type_, user, timestamp=f"2024-03-01T10:{minute:02d}:00Z",
                                item_id=item)
        patch = self.gear.on_event(event, self.profile(user), config=self.config)
        if patch is not None:
            for path, value in patch.set.items():
                self.traits.setdefault(user, {})[path.split(".", 1)[1]] = value
        return patch

    def views(self, user, *items, start=0):
        for n, item in enumerate(items):
            self.event(user, "view", item, start + n)


@pytest.fixture
def engine(gear, make_event, make_profile):
    return Engine(gear, make_event, make_profile)


def test_views_in_a_session_are_counted_together(engine, gear):
    engine.views("u1", "tent", "bag")
    state = gear.ctx.state
    assert state.get("pop") == {"tent": 1, "bag": 1}
    assert state.get("co:tent") == {"bag": 1} and state.get("co:bag") == {"tent": 1}
    assert engine.traits["u1"]["recent_views"] == [{"item": "tent", "at": "2024-03-01T10:00:00Z"},
                                                   {"item": "bag", "at": "2024-03-01T10:01:00Z"}]


def test_views_outside_the_window_or_of_other_visitors_are_not_paired(engine, gear):
    engine.views("u1", "tent")
    engine.views("u2", "stove", start=1)
    engine.views("u1", "kettle", start=45)
    assert gear.ctx.state.get("pop") == {"tent": 1, "stove": 1, "kettle": 1}
    assert [k for k in sorted(gear.ctx.state.keys()) if k.startswith("co:")] == []


def test_a_pair_counts_once_per_session(engine, gear):
    engine.views("u1", "tent", "bag", "tent", "bag")
    assert gear.ctx.state.get("co:tent") == {"bag": 1}
    assert [r["item"] for r in engine.traits["u1"]["recent_views"]] == ["tent", "bag"]


def test_scores_co_viewed_items_first_then_popular_ones(engine, gear):
    engine.views("u1", "tent", "bag")
    engine.views("u2", "tent", "stove", "bag")
    engine.views("u4", "lamp", "lamp")
    engine.views("u3", "tent")
    items = [{"id": "kettle"}, {"id": "stove"}, {"id": "bag"}, {"id": "lamp"}]
    scores = {s.item_id: s for s in gear.score_items(engine.profile("u3"), items)}
    assert set(scores) == {"bag", "stove", "lamp"}  # kettle: never viewed, left out
    assert scores["bag"].score > scores["stove"].score > scores["lamp"].score
    assert scores["bag"].reason == "viewed together" and scores["lamp"].reason == "popular"
    assert scores["bag"].score == pytest.approx(0.8 * 1 + 0.2 * 2 / 3, abs=1e-4)


def test_popularity_weight_one_ranks_by_views_only(engine, gear):
    engine.views("u1", "tent", "bag")
    engine.views("u2", "bag")
    scores = gear.score_items(engine.profile("u1"), [{"id": "tent"}, {"id": "bag"}],
                              config={"popularity_weight": 1})
    assert [(s.item_id, s.score) for s in scores] == [("tent", 0.5), ("bag", 1.0)]


def test_purchased_items_rank_last_when_configured(engine, gear):
    engine.views("u1", "tent", "bag")
    engine.event("u1", "purchase", "bag", 5)
    assert engine.traits["u1"]["purchased_items"] == ["bag"]
    profile = engine.profile("u1")
    [bag] = gear.score_items(profile, [{"id": "bag"}])
    assert bag.score == -1.0 and bag.reason == "already purchased"
    [bag] = gear.score_items(profile, [{"id": "bag"}], config={"exclude_purchased": False})
    assert bag.score > 0


def test_no_opinion_before_anything_is_learnt(gear, make_profile):
    assert gear.score_items(make_profile(), [{"id": "tent"}]) is None


def test_ignores_events_without_a_usable_item(gear, make_event, make_profile):
    profile = make_profile()
    assert gear.on_event(make_event("view"), profile) is None
    assert gear.on_event(make_event("view", item_id="x" * 65), profile) is None
    assert gear.on_event(make_event("search", item_id="tent"), profile) is None
    assert gear.on_event(make_event("view", timestamp="soon", item_id="tent"), profile) is None
    assert gear.ctx.state.keys() == []


def test_bump_replaces_the_smallest_entry(gear):
    bump = gear.module.bump
    counts = {"a": 5, "b": 1, "c": 3}
    assert bump(counts, "a", 3) is None and counts["a"] == 6
    assert bump(counts, "d", 3) == "b"
    assert counts == {"a": 6, "c": 3, "d": 2}


def test_state_stays_bounded_and_consistent(gear, make_event, make_profile):
    config = {"max_items": 10, "top_k": 2, "session_minutes": 1440}
    engine = Engine(gear, make_event, make_profile, config)
    for user in range(30):
        engine.views(f"u{user}", "hot", *(f"item-{user}-{n}" for n in range(4)))
    state = gear.ctx.state
    popularity = state.get("pop")
    assert len(popularity) == 10 and popularity["hot"] == 30  # the popular item survives
    neighbour_keys = [k for k in sorted(state.keys()) if k.startswith("co:")]
    assert {k[3:] for k in neighbour_keys} <= set(popularity)
    assert all(len(state.get(k)) <= 2 for k in neighbour_keys)


def test_the_largest_settings_fit_the_state_limit(gear):
    schema = gear.manifest.config_schema["properties"]
    items, neighbours = schema["max_items"]["maximum"], schema["top_k"]["maximum"]
    big = 10 ** 9

    def item(n):
        return f"{n:064d}"

    # the largest state those settings allow: 64-character ids, ten-digit counts
    state = {"pop": {item(n): big for n in range(items)}}
    state.update({f"co:{item(n)}": {item(m): big for m in range(neighbours)} for n in range(items)})
    assert len(json.dumps(state)) <= gear.manifest.limits["state_kb"] * 1024
