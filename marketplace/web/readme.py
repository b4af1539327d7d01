"""A gear's README and changelog as safe HTML for its catalog page.

The Markdown comes from the gear's archive, written by a third party, so it is
untrusted: markdown-it renders it (raw HTML allowed, as authors expect), then
nh3 keeps only a fixed set of harmless tags and attributes, drops scripts,
event handlers and ``javascript:`` URLs, and marks every link
``rel="nofollow noopener noreferrer"``. Headings move down one level so the
page keeps a single ``<h1>``. Archives are immutable, so the HTML is cached per
archive sha256 (bounded, least recently used first out).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from gears_sdk.archive import read_archive
from marketplace.storage import StorageError

log = logging.getLogger(__name__)

CACHE_SIZE = 256
MAX_DOC_BYTES = 512 * 1024

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "nofollow noopener noreferrer"

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_heading = re.compile(r"<(/?)h([1-6])\b")


def render_markdown(source: str) -> Markup:
    """Markdown → sanitized HTML, safe to put in a page as is."""
    html = _markdown.render(source)
    clean = nh3.clean(html, tags=ALLOWED_TAGS | {"h1"}, attributes=ALLOWED_ATTRIBUTES,
                      url_schemes=URL_SCHEMES, link_rel=LINK_REL, strip_comments=True)
    shifted = _heading.sub(lambda m: f"<{m.group(1)}h{min(int(m.group(2)) + 1, 6)}", clean)
    return Markup(shifted)  # noqa: S704 (sanitized by nh3 just above)


@dataclass(frozen=True)
class GearDocs:
    """The rendered README and changelog of one archive (either may be missing)."""

    readme: Markup | None
    changelog: Markup | None
    problem: str | None = None


_cache: OrderedDict[str, GearDocs] = OrderedDict()
_lock = threading.Lock()


def _decode(raw: bytes | None) -> str | None:
    if raw is None or len(raw) > MAX_DOC_BYTES:
        return None
    return raw.decode("utf-8", errors="replace")


def gear_docs(sha256: str, changelog_name: str | None, store: object) -> GearDocs:
    """The docs of the archive ``sha256``, read through ``store`` (a blob store) once."""
    with _lock:
        if sha256 in _cache:
            _cache.move_to_end(sha256)
            return _cache[sha256]
    try:
        archive = read_archive(store.read(sha256))  # type: ignore[attr-defined]
    except StorageError:
        # Not cached: storage may come back.
        return GearDocs(None, None, "the documentation cannot be loaded right now")
    except Exception:
        log.exception("cannot read the docs of archive %s", sha256)
        return GearDocs(None, None, "the documentation of this version cannot be read")
    readme = archive.readme()
    changelog = None
    if changelog_name:
        try:
            changelog = _decode(archive.read(changelog_name))
        except KeyError:
            changelog = None
    docs = GearDocs(render_markdown(readme) if readme else None,
                    render_markdown(changelog) if changelog else None)
    with _lock:
        _cache[sha256] = docs
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return docs
