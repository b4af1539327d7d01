"""Exit-intent offer: a last-chance discount, personal and dated.

The same render serves two channels: ``html`` for an overlay on the site
(a labelled dialog with a close button), and ``data`` with every piece
(headline, text, code, expiry as an ISO date and as words, link) for an
email tool that builds its own markup. The expiry is computed when the offer
is rendered, i.e. shown or sent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html import escape
from urllib.parse import urlencode

from gears_sdk import hookimpl
from gears_sdk.types import RenderResult

FALLBACK_NAME = "there"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def _today() -> date:
    return datetime.now(UTC).date()


def long_date(day):
    """``8 March 2024``: the same in every locale the worker may run in."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _fill(template, **values):
    # str.replace, not str.format: templates are user-supplied text
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _link(base, code):
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'discount': code})}"


@hookimpl
def gear_render(profile, content, config):
    """Render the offer; ``content`` may override ``headline`` and ``body``."""
    first_name = str((profile.get("attributes") or {}).get("first_name") or FALLBACK_NAME)
    category = (profile.get("traits") or {}).get("top_category")
    code, discount = config["discount_code"], config["discount_text"]
    headline = _fill(content.get("headline") or config["headline"], first_name=first_name)
    body = _fill(content.get("body") or config["body"], discount=discount)
    category_line = (_fill(config["category_line"], category=str(category))
                     if category and config["category_line"] else None)
    expires = _today() + timedelta(days=config["expiry_days"])
    url = _link(config["cta_url"], code)

    parts = ['<aside class="gear-exit-offer" role="dialog" aria-labelledby="gear-exit-offer-title">',
             '<button type="button" class="gear-exit-offer__close" aria-label="Close">&times;</button>',
             f'<h2 id="gear-exit-offer-title" class="gear-exit-offer__headline">{escape(headline)}</h2>',
             f'<p class="gear-exit-offer__body">{escape(body)}</p>']
    if category_line:
        parts.append(f'<p class="gear-exit-offer__category">{escape(category_line)}</p>')
    parts += [f'<p class="gear-exit-offer__code">Use code <strong><code>{escape(code)}</code>'
              "</strong> at checkout.</p>",
              f'<p class="gear-exit-offer__expiry">Offer ends <time datetime="{expires.isoformat()}">'
              f"{long_date(expires)}</time>.</p>",
              f'<a class="gear-exit-offer__cta" href="{escape(url)}">{escape(config["cta_text"])}</a>',
              "</aside>"]
    return RenderResult(html="".join(parts), data={
        "headline": headline, "body": body, "category_line": category_line,
        "discount_code": code, "discount_text": discount,
        "expires_on": expires.isoformat(), "expires_text": long_date(expires),
        "cta_text": config["cta_text"], "cta_url": url})
