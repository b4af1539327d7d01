"""Hero banner: a template gear greeting visitors by name.

Personalisation comes only from the fields declared in gear.json: the
visitor's first name, their preferred category (the button then links to it)
and their RFM segment (loyal customers see a badge). Every value, whether
from the profile, the config or the content, is escaped before it reaches
the HTML.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode, urlsplit

from gears_sdk import hookimpl
from gears_sdk.types import RenderResult

FALLBACK_NAME = "there"
VIP_SEGMENTS = {"champion", "loyal"}


def _headline(template: str, first_name: str) -> str:
    # str.replace, not str.format: the headline is user-supplied text
    return template.replace("{first_name}", first_name)


def _cta_url(base: str, category: str | None) -> str:
    if urlsplit(base).scheme not in ("http", "https"):
        return "#"
    if not category:
        return base
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'category': category})}"


@hookimpl
def gear_render(profile, content, config, ctx):
    """Render the banner; ``content`` may override the headline and button text."""
    attributes = profile.get("attributes") or {}
    traits = profile.get("traits") or {}
    first_name = str(attributes.get("first_name") or FALLBACK_NAME)
    # top_category is written by acme/category-affinity; preferred_category by CRM imports.
    category = traits.get("top_category") or traits.get("preferred_category")
    segment = (traits.get("rfm") or {}).get("segment")
    vip = segment in VIP_SEGMENTS

    headline = _headline(content.get("headline") or config["headline"], first_name)
    cta_text = content.get("cta_text") or config["cta_text"]
    url = _cta_url(config["cta_url"], category)
    theme = config["theme"]

    parts = [f'<section class="gear-hero gear-hero--{escape(theme)}" data-theme="{escape(theme)}">']
    if vip:
        parts.append('<span class="gear-hero__badge">VIP</span>')
    parts.append(f'<h1 class="gear-hero__headline">{escape(headline)}</h1>')
    if category:
        parts.append(f'<p class="gear-hero__sub">New in {escape(str(category))}</p>')
    href = escape(url, quote=True)
    parts.append(f'<a class="gear-hero__cta" href="{href}">{escape(cta_text)}</a>')
    parts.append("</section>")
    ctx.log.debug("rendered hero for segment %s", segment)
    return RenderResult(
        html="".join(parts),
        data={"headline": headline, "cta_text": cta_text, "cta_url": url, "theme": theme,
              "vip": vip},
    )
