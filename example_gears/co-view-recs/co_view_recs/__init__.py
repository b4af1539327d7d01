"""Co-view recommendations: "visitors who viewed this also viewed".

Learning (``gear_on_event``): when a visitor views item B within the session
window after viewing item A, the pair (A, B) counts once. Counts live in
``ctx.state``, shared by all the installation's visitors:

* ``pop``: ``{item: views}``, the popularity of the ``max_items`` most viewed
  items;
* ``co:<item>``: ``{neighbour: co-views}``, the ``top_k`` items most often
  viewed together with ``<item>``.

Both are bounded with the *Space-Saving* rule: when full, a new entry
replaces the smallest one and starts from its count plus one, so a newly
popular item can climb in while the state never grows past
``max_items * top_k`` entries (the config's maxima fit ``limits.state_kb``).
An item dropped from ``pop`` takes its ``co:`` key with it.

Each visitor's latest views are kept in ``traits.recent_views`` (and
purchases in ``traits.purchased_items``), so scoring needs no event history.

Scoring (``gear_score_items``): a candidate's score blends how often it was
co-viewed with the visitor's recent views (the latest view weighing most)
and its popularity, both scaled to 0..1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gears_sdk import hookimpl
from gears_sdk.types import ItemScore, ProfilePatch

MAX_ITEM_ID = 64
MAX_PURCHASED = 50


def parse_time(value):
    """An ISO 8601 timestamp as an aware datetime (naive ones are taken as UTC)."""
    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def bump(counts, key, limit):
    """Count ``key`` in ``counts`` holding at most ``limit`` keys; returns the key evicted, if any."""
    if key in counts:
        counts[key] += 1
        return None
    evicted, floor = None, 0
    if len(counts) >= limit:
        evicted = min(counts, key=counts.get)
        floor = counts.pop(evicted)
    counts[key] = floor + 1
    return evicted


def _item_id(event, config):
    item = (event.get("properties") or {}).get(config["item_property"])
    if isinstance(item, int) and not isinstance(item, bool):
        item = str(item)
    return item if isinstance(item, str) and 0 < len(item) <= MAX_ITEM_ID else None


def _record_view(item, session, config, ctx):
    popularity = ctx.state.get("pop") or {}
    evicted = bump(popularity, item, config["max_items"])
    ctx.state.set("pop", popularity)
    if evicted is not None:
        ctx.state.delete(f"co:{evicted}")
    for other in session:
        if other not in popularity:
            continue  # no longer tracked
        for a, b in ((item, other), (other, item)):
            neighbours = ctx.state.get(f"co:{a}") or {}
            bump(neighbours, b, config["top_k"])
            ctx.state.set(f"co:{a}", neighbours)


@hookimpl
def gear_on_event(event, profile, config, ctx):
    """Learn from views (co-views, popularity) and remember purchases."""
    item = _item_id(event, config)
    if item is None or event.get("type") not in (config["view_event"], config["purchase_event"]):
        return None
    traits = profile.get("traits") or {}
    if event["type"] == config["purchase_event"]:
        purchased = [i for i in traits.get("purchased_items") or [] if i != item]
        return ProfilePatch(set={"traits.purchased_items": [*purchased, item][-MAX_PURCHASED:]})
    try:
        at = parse_time(event["timestamp"])
    except (KeyError, TypeError, ValueError):
        ctx.log.warning("view without a valid timestamp ignored")
        return None
    window = timedelta(minutes=config["session_minutes"])
    recent = [r for r in traits.get("recent_views") or []
              if isinstance(r, dict) and isinstance(r.get("item"), str)]
    session = []
    for view in recent:
        try:
            if timedelta(0) <= at - parse_time(view["at"]) <= window:
                session.append(view["item"])
        except (KeyError, TypeError, ValueError):
            continue
    if item not in session:  # each pair counts once per session
        _record_view(item, list(dict.fromkeys(session)), config, ctx)
    recent = [r for r in recent if r["item"] != item]
    recent.append({"item": item, "at": at.isoformat().replace("+00:00", "Z")})
    return ProfilePatch(set={"traits.recent_views": recent[-config["recent_views"]:]})


@hookimpl
def gear_score_items(profile, items, config, ctx):
    """Score ``items`` by co-views with the visitor's recent views, blended with popularity."""
    traits = profile.get("traits") or {}
    recent = [r.get("item") for r in traits.get("recent_views") or [] if isinstance(r, dict)]
    popularity = ctx.state.get("pop") or {}
    co_views = {}
    for rank, viewed in enumerate(reversed(recent[-config["recent_views"]:])):
        for neighbour, count in (ctx.state.get(f"co:{viewed}") or {}).items():
            co_views[neighbour] = co_views.get(neighbour, 0.0) + count / (rank + 1)
    if not popularity and not co_views:
        return None  # nothing learnt yet: let the engine keep its order
    purchased = set(traits.get("purchased_items") or []) if config["exclude_purchased"] else set()
    top_co = max(co_views.values(), default=0.0) or 1.0
    top_pop = max(popularity.values(), default=0) or 1
    weight = config["popularity_weight"]
    scores = []
    for item in items:
        item_id = str(item.get("id"))
        if item_id in purchased:
            scores.append(ItemScore(item_id, -1.0, "already purchased"))
            continue
        co = co_views.get(item_id, 0.0) / top_co
        pop = popularity.get(item_id, 0) / top_pop
        score = round((1 - weight) * co + weight * pop, 4)
        if score > 0:
            scores.append(ItemScore(item_id, score, "viewed together" if co else "popular"))
    return scores
