"""Product recommendations block: item cards for the items the engine picked.

The engine fills ``content["items"]`` with catalog items ranked by the
scoring extensions installed (this gear requires ``acme/co-view-recs``), so
the template only presents them. Every value is escaped; links and images
are kept only when they are http(s) URLs, so an item title or URL from a
catalog feed cannot inject markup or script.

With no usable item the gear returns ``None``: the engine then shows the
campaign's default experience instead of an empty box.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from gears_sdk import hookimpl
from gears_sdk.types import RenderResult


def _safe_url(value):
    return value if isinstance(value, str) and urlsplit(value).scheme in ("http", "https") else None


def _price(value, symbol):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{symbol}{value:,.2f}"
    return str(value) if isinstance(value, str) and value else None


def _card(item, symbol):
    title = escape(str(item["title"]))
    parts = [f'<li class="gear-recs__item" data-item-id="{escape(str(item["id"]))}">']
    image = _safe_url(item.get("image_url"))
    inner = ""
    if image:
        described = item.get("attributes") or {}
        alt = escape(str(described.get("image_alt") or item["title"]))
        inner += f'<img class="gear-recs__image" src="{escape(image)}" alt="{alt}" loading="lazy">'
    inner += f'<span class="gear-recs__title">{title}</span>'
    link = _safe_url(item.get("url"))
    parts.append(f'<a class="gear-recs__link" href="{escape(link)}">{inner}</a>' if link else inner)
    price = _price(item.get("price"), symbol)
    if price:
        parts.append(f'<span class="gear-recs__price">{escape(price)}</span>')
    parts.append("</li>")
    return "".join(parts)


@hookimpl
def gear_render(content, config):
    """Render up to ``max_items`` cards, or ``None`` when there is nothing to show."""
    items = [i for i in content.get("items") or []
             if isinstance(i, dict) and i.get("id") not in (None, "") and i.get("title")]
    items = items[:config["max_items"]]
    if not items:
        return None
    heading = str(content.get("heading") or config["heading"])
    layout = config["layout"]
    html = (f'<section class="gear-recs gear-recs--{escape(layout)}" aria-label="{escape(heading)}">'
            f'<h2 class="gear-recs__heading">{escape(heading)}</h2>'
            f'<ul class="gear-recs__list">'
            + "".join(_card(item, config["currency_symbol"]) for item in items)
            + "</ul></section>")
    return RenderResult(html=html, data={"heading": heading,
                                         "item_ids": [str(i["id"]) for i in items]})
