"""The demo workspace: gears installed, a product catalog, segments, two campaigns and a
stream of sample events that the installed extension gears turn into traits."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace import services
from marketplace.accounts import service as accounts
from marketplace.audit import SystemActor
from marketplace.db import utcnow
from marketplace.demo.gears import Example
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, VersionStatus, Workspace
from marketplace.workspaces import service as installs
from marketplace.workspaces.models import Installation

Say = Callable[[str], None]

#: What the demo workspace runs, in install order (dependencies first).
DEMO_GEARS = ("acme/rfm-score", "acme/category-affinity", "acme/co-view-recs",
              "acme/hero-banner", "acme/product-recs-block", "acme/exit-intent-offer")

CATEGORIES = {
    "shoes": ["Trail runner", "City sneaker", "Leather boot", "Canvas slip-on"],
    "bags": ["Weekender duffel", "Laptop backpack", "Canvas tote"],
    "outdoor": ["Two-person tent", "Down sleeping bag", "Camp stove"],
    "hats": ["Wool beanie", "Sun hat"],
}
PEOPLE = [("alice", "Alice"), ("bob", "Bob"), ("chen", "Chen"), ("dara", "Dara"),
          ("emil", "Emil"), ("fatou", "Fatou"), ("gus", "Gus"), ("hana", "Hana")]


def catalog_items() -> list[dict[str, Any]]:
    items = []
    for category, titles in CATEGORIES.items():
        for i, title in enumerate(titles):
            item_id = f"{category[:3]}-{i + 1}"
            items.append({"id": item_id, "title": title, "category": category,
                          "price": 19.0 + 13 * i + len(category), "url": f"https://shop.example.com/p/{item_id}",
                          "image_url": None, "attributes": {}, "active": True})
    return items


def _workspace(session: Session, name: str) -> Workspace:
    workspace = accounts.get_workspace(session, name)
    if workspace is None:
        raise RuntimeError(f"the demo workspace {name!r} does not exist; seed the accounts first")
    return workspace


def install_gears(session: Session, workspace_name: str, examples: list[Example],
                  say: Say) -> dict[str, str]:
    """Install the demo gears that are missing, each at the seed's own approved version
    (never another archive of the same gear); ``{gear name: installation id}``."""
    workspace = _workspace(session, workspace_name)
    have = {name: iid for iid, name in session.execute(
        select(Installation.id, Gear.name).join(Gear, Installation.gear_id == Gear.id)
        .where(Installation.workspace_id == workspace.id))}
    by_name = {ex.name: ex for ex in examples}
    for name in DEMO_GEARS:
        ex = by_name.get(name)
        if name in have or ex is None or not _approved(session, ex):
            continue
        try:
            inst = installs.install(session, workspace, name, version_spec=ex.version,
                                    config={}, consent=True, actor=SystemActor.seed)
        except MarketplaceError as exc:
            session.rollback()
            say(f"did not install {name}: {exc.message}")
            continue
        have[name] = inst.id
        say(f"installed {name} into {workspace_name} (version {ex.version})")
    return have


def _approved(session: Session, ex: Example) -> bool:
    """Whether the seed's own archive of ``ex`` is approved and public."""
    return session.scalar(
        select(GearVersion.id).join(Gear, GearVersion.gear_id == Gear.id)
        .where(Gear.name == ex.name, GearVersion.version == ex.version,
               GearVersion.sha256 == ex.sha256, GearVersion.status == VersionStatus.approved,
               GearVersion.yanked.is_(False), GearVersion.quarantined.is_(False))) is not None


def sample_events(rng: random.Random) -> list[dict[str, Any]]:
    """A few weeks of browsing and buying: each person leans to one category."""
    now = utcnow()
    events: list[dict[str, Any]] = []
    favourites = list(CATEGORIES)
    for n, (user, _first_name) in enumerate(PEOPLE):
        favourite = favourites[n % len(favourites)]
        events.append({"user_id": user, "type": "custom", "name": "signup",
                       "properties": {"source": "newsletter" if n % 2 else "ads"},
                       "timestamp": (now - timedelta(days=30)).isoformat()})
        for k in range(12):
            category = favourite if rng.random() < 0.7 else rng.choice(favourites)
            i = rng.randrange(len(CATEGORIES[category]))
            item = f"{category[:3]}-{i + 1}"
            when = now - timedelta(days=rng.randint(0, 25), minutes=k)
            kind = "purchase" if (n % 3 == 0 and k % 5 == 0) else "view"
            props: dict[str, Any] = {"item_id": item, "category": category}
            if kind == "purchase":
                props["amount"] = 20 + 15 * i
            events.append({"user_id": user, "type": kind, "properties": props,
                           "timestamp": when.isoformat()})
    return sorted(events, key=lambda e: e["timestamp"])


def segments_and_campaigns(ids: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    segments = {
        "buyers": {"title": "Bought in the last 30 days",
                   "rule": {"event": "purchase", "at_least": 1, "within_days": 30}},
        "browsers": {"title": "Browsed but never bought",
                     "rule": {"and": [{"event": "view", "at_least": 3, "within_days": 30},
                                      {"not": {"event": "purchase", "at_least": 1,
                                               "within_days": 365}}]}},
    }
    campaigns: dict[str, Any] = {}
    if "acme/hero-banner" in ids:
        experiences = [{"name": "welcome-back", "segment": "buyers",
                        "installation": ids["acme/hero-banner"],
                        "content": {"headline": "Welcome back, {first_name}!"}}]
        if "acme/exit-intent-offer" in ids:
            experiences.append({"name": "first-order-offer", "segment": "browsers",
                                "installation": ids["acme/exit-intent-offer"], "content": {}})
        campaigns["home"] = {"title": "Home page hero", "placement": "home-hero",
                             "experiences": experiences,
                             "fallback": {"html": "<p>Welcome to the shop.</p>",
                                          "data": {"default": True}}}
    if "acme/product-recs-block" in ids:
        campaigns["recommendations"] = {
            "title": "Recommended for you", "placement": "product-recs",
            "experiences": [{"name": "for-you", "segment": None,
                             "installation": ids["acme/product-recs-block"],
                             "content": {"heading": "Recommended for you", "items": {"count": 4}}}],
            "fallback": {"html": "<p>Our bestsellers are back in stock.</p>"}}
    return segments, campaigns


def seed_engine(app: Flask, session: Session, workspace_name: str, ids: dict[str, str],
                say: Say) -> None:
    """Catalog, segments, campaigns and events, once (skipped when the catalog has items),
    through the app's engine service: in this process or on an engine node."""
    session.commit()  # the seed's own writes are done: the engine works in its own sessions
    engine = services.engine(app)
    if engine.items(workspace_name, limit=1)["items"]:
        return
    items = catalog_items()
    engine.put_items(workspace_name, items)
    # What a CRM import through a connector would bring: names and emails.
    engine.import_profiles(workspace_name, [
        {"user_id": user, "attributes": {"first_name": first, "email": f"{user}@example.com"}}
        for user, first in PEOPLE])
    segments, campaigns = segments_and_campaigns(ids)
    for name, body in segments.items():
        engine.put_segment(workspace_name, name, body)
    for name, body in campaigns.items():
        engine.put_campaign(workspace_name, name, body)
    say(f"added {len(items)} catalog items, {len(segments)} segments, "
        f"{len(campaigns)} campaigns")
    events = sample_events(random.Random(7))
    result = engine.ingest(workspace_name, events)
    say(f"ingested {len(events)} sample events through the installed gears "
        f"({result.get('patches_applied', 0)} profile patches)")
