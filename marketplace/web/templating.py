"""Template helpers shared by every page: dates, counts, labels and query-string links."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, request

from gears_sdk.hookspecs import KINDS
from gears_sdk.versions import Version
from marketplace.workspaces import describe_capability
from marketplace.workspaces.capabilities import described

#: Every kind of gear (:data:`gears_sdk.hookspecs.KINDS`, in order) and its label.
KIND_LABELS = {kind: kind.capitalize() for kind in KINDS}
KIND_BLURBS = {
    "connector": "Bring data in from other systems, or send it out.",
    "extension": "Score, enrich and react to your customers' events.",
    "template": "Render personalized content for a placement.",
}


def date(value: datetime | str | None) -> str:
    """``12 Mar 2026``: unambiguous for every reader, whatever their locale. Takes a
    datetime or the ISO text the engine service answers."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return "—"
    return value.strftime("%-d %b %Y") if value else "—"


def count(value: int | None) -> str:
    """``1234567`` → ``1.2M``, ``12345`` → ``12.3k``."""
    n = int(value or 0)
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 10_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n:,}"


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{count(n)} {one if n == 1 else (many or one + 's')}"


def query_url(**changes: Any) -> str:
    """The current URL with some query parameters changed (``None`` removes one).

    Changing anything but the page goes back to page 1.
    """
    args = {k: v for k, v in request.args.items() if v != ""}
    if "page" not in changes:
        args.pop("page", None)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = str(value)
    return request.path + ("?" + urlencode(args) if args else "")


def init_app(app: Flask) -> None:
    app.jinja_env.filters["date"] = date

    app.jinja_env.add_extension("jinja2.ext.do")
    app.jinja_env.filters["compact"] = count
    app.jinja_env.globals.update(plural=plural, query_url=query_url, KIND_LABELS=KIND_LABELS,
                                 KIND_BLURBS=KIND_BLURBS,
                                 describe_capability=describe_capability, described=described,
                                 version_gt=lambda a, b: Version.parse(a) > Version.parse(b))
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
