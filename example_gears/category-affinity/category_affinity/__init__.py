"""Category affinity: a decaying interest score per product category.

Each event with a category adds its type's weight to that category. Scores
decay exponentially: after ``half_life_days`` without activity a score is
half what it was. Rather than replaying the visitor's whole history, the gear
keeps the scores and the time they were last brought up to date
(``traits.affinity_as_of``); each event decays them to its own time, then
adds its weight. An event older than that time (delivered late) adds its
weight decayed to ``as_of`` instead, so the result does not depend on the
order events arrive in.

Only the ``top_n`` strongest categories are kept, and scores that have faded
below :data:`MIN_SCORE` are dropped, so the trait stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gears_sdk import hookimpl
from gears_sdk.types import ProfilePatch

MIN_SCORE = 0.01
MAX_CATEGORY_LENGTH = 64


def parse_time(value):
    """An ISO 8601 timestamp as an aware datetime (naive ones are taken as UTC)."""
    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def decay(days, half_life_days):
    """The factor a score keeps after ``days``."""
    return 0.5 ** (max(days, 0.0) / half_life_days)


def update(scores, as_of, category, weight, at, half_life_days, top_n):
    """New ``(scores, as_of)`` after an event of ``weight`` on ``category`` at ``at``."""
    if as_of is None or at >= as_of:
        factor = decay((at - as_of).total_seconds() / 86400, half_life_days) if as_of else 1.0
        scores = {c: s * factor for c, s in scores.items()}
        as_of, added = at, weight
    else:
        added = weight * decay((as_of - at).total_seconds() / 86400, half_life_days)
    scores[category] = scores.get(category, 0.0) + added
    kept = sorted(((s, c) for c, s in scores.items() if s >= MIN_SCORE), reverse=True)[:top_n]
    return {c: round(s, 4) for s, c in kept}, as_of


@hookimpl
def gear_on_event(event, profile, config, ctx):
    """Add this event to ``traits.affinity`` and refresh ``traits.top_category``."""
    weight = config["weights"].get(event.get("type"))
    category = (event.get("properties") or {}).get(config["category_property"])
    if not weight or not isinstance(category, str) or not category.strip():
        return None
    category = category.strip()[:MAX_CATEGORY_LENGTH]
    traits = profile.get("traits") or {}
    try:
        at = parse_time(event["timestamp"])
        as_of = parse_time(traits["affinity_as_of"]) if traits.get("affinity_as_of") else None
    except (KeyError, TypeError, ValueError):
        ctx.log.warning("event %s has no valid timestamp; affinity not updated", event.get("id"))
        return None
    current = traits.get("affinity")
    scores = {c: float(s) for c, s in current.items()} if isinstance(current, dict) else {}
    scores, as_of = update(scores, as_of, category, float(weight), at,
                           config["half_life_days"], config["top_n"])
    top = max(scores, key=scores.get)
    return ProfilePatch(set={"traits.affinity": scores,
                             "traits.affinity_as_of": as_of.isoformat().replace("+00:00", "Z"),
                             "traits.top_category": top})
