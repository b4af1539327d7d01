"""RFM score: recency, frequency and monetary value of a profile's purchases.

On every event the gear looks at the profile's purchases within the
configured window (ending at the event's time), scores each dimension from 1
to 5 and stores the result in ``traits.rfm``. It returns no patch when the
result has not changed, so most events cost the engine nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gears_sdk import hookimpl
from gears_sdk.types import ProfilePatch

# Upper bounds of recency (days) for scores 5..2; anything older scores 1.
RECENCY_DAYS = (7, 30, 60, 90)
# Lower bounds of frequency (purchases) and monetary value for scores 5..2.
FREQUENCY = (10, 5, 3, 2)
MONETARY = (1000.0, 500.0, 200.0, 50.0)


def parse_time(value: str) -> datetime:
    """An ISO 8601 timestamp as an aware datetime (naive ones are taken as UTC)."""
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _score_at_most(value: float, bounds: tuple[float, ...]) -> int:
    for i, bound in enumerate(bounds):
        if value <= bound:
            return 5 - i
    return 1


def _score_at_least(value: float, bounds: tuple[float, ...]) -> int:
    for i, bound in enumerate(bounds):
        if value >= bound:
            return 5 - i
    return 1


def segment(r: int, f: int, m: int) -> str:
    """A readable label for an R/F/M triple."""
    if r >= 4 and f >= 4:
        return "champion"
    if f >= 4 or (f >= 3 and m >= 4):
        return "loyal"
    if r <= 2 and f >= 2:
        return "at_risk"
    if f == 1 and r >= 4:
        return "new"
    if r <= 2:
        return "hibernating"
    return "regular"


def compute_rfm(purchases: list[dict], now: datetime, window_days: int,
                amount_property: str) -> dict | None:
    """The ``traits.rfm`` value for ``purchases`` seen at ``now``; None without any."""
    start = now - timedelta(days=window_days)
    in_window = []
    for event in purchases:
        try:
            ts = parse_time(event["timestamp"])
        except (KeyError, TypeError, ValueError):
            continue
        if start <= ts <= now:
            in_window.append((ts, event))
    if not in_window:
        return None
    last = max(ts for ts, _ in in_window)
    recency = (now - last).days
    frequency = len(in_window)
    monetary = 0.0
    for _, event in in_window:
        amount = (event.get("properties") or {}).get(amount_property)
        if isinstance(amount, (int, float)) and not isinstance(amount, bool):
            monetary += amount
    r = _score_at_most(recency, RECENCY_DAYS)
    f = _score_at_least(frequency, FREQUENCY)
    m = _score_at_least(monetary, MONETARY)
    return {"recency_days": recency, "frequency": frequency, "monetary": round(monetary, 2),
            "r": r, "f": f, "m": m, "score": f"{r}{f}{m}", "segment": segment(r, f, m)}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    """Recompute ``traits.rfm`` as of this event."""
    kind = config["purchase_event"]
    seen = {e.get("id") for e in profile.get("events") or [] if e.get("id")}
    events = list(profile.get("events") or [])
    if event.get("id") not in seen:
        events.append(event)
    purchases = [e for e in events if e.get("type") == kind]
    try:
        now = parse_time(event["timestamp"])
    except (KeyError, TypeError, ValueError):
        ctx.log.warning("event without a valid timestamp; rfm not updated")
        return None
    rfm = compute_rfm(purchases, now, config["window_days"], config["amount_property"])
    current = (profile.get("traits") or {}).get("rfm")
    if rfm == current:
        return None
    if rfm is None:
        return ProfilePatch(unset=["traits.rfm"])
    return ProfilePatch(set={"traits.rfm": rfm})
