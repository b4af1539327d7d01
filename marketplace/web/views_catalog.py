"""Catalog pages anyone may browse: home, search, and a gear's own page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from gears_sdk.hookspecs import KINDS
from gears_sdk.manifest import SECRET_FORMATS
from marketplace.blobs import get_blob_store
from marketplace.db import get_session
from marketplace.models import Gear, GearVersion, VersionStatus
from marketplace.registry import queries
from marketplace.registry.search import SORTS, CatalogQuery, facet_counts, search
from marketplace.settings import engine_version
from marketplace.web import readme
from marketplace.web.forms import FormField, all_fields, build_form
from marketplace.web.session import current_user, current_viewer
from marketplace.workspaces import capabilities_of, describe_capability
from marketplace.workspaces.planning import engine_mismatch, engine_range

bp = Blueprint("web_catalog", __name__)

PER_PAGE = 20
MAX_PAGE = 500
HOME_LIST = 6


@bp.get("/")
def home() -> str:
    """Where a visitor starts: what kinds of gears exist, what is new, what is popular."""
    session, viewer = get_session(), current_viewer()
    categories = facet_counts(session, CatalogQuery(), viewer, "category")
    newest = search(session, CatalogQuery(sort="newest", per_page=HOME_LIST), viewer,
                    with_facets=False)
    popular = search(session, CatalogQuery(sort="installs", per_page=HOME_LIST), viewer,
                     with_facets=False)
    kinds = {f.value: f.count for f in facet_counts(session, CatalogQuery(), viewer, "kind")}
    return render_template("catalog/home.html", categories=categories, newest=newest.gears,
                           popular=popular.gears, kinds=kinds, total=newest.total,
                           card_badges=card_badges)


def _page_arg() -> int:
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        page = 1
    return min(max(page, 1), MAX_PAGE)


@bp.get("/search")
def search_page() -> str:
    """Full-text search with kind, category and publisher facets, sorting and paging."""
    kind = request.args.get("kind", "")
    sort = request.args.get("sort", "relevance")
    query = CatalogQuery(
        q=request.args.get("q", "").strip()[:200],
        kind=kind if kind in KINDS else "",
        category=request.args.get("category", "").strip()[:64],
        publisher=request.args.get("publisher", "").strip()[:64],
        sort=sort if sort in SORTS else "relevance",
        page=_page_arg(),
        per_page=PER_PAGE,
    )
    result = search(get_session(), query, current_viewer())
    return render_template("catalog/search.html", result=result, query=query, sorts=SORTS,
                           kinds=KINDS, card_badges=card_badges)


def _visible_gear(publisher: str, name: str) -> Gear:
    gear = queries.get_gear(get_session(), publisher, name)
    viewer = current_viewer()
    if gear is None or not (viewer.manages(gear) or queries.latest_public(gear)
                            or any(queries.can_see_version(viewer, v) for v in gear.versions)):
        abort(404, f"there is no gear called {publisher}/{name}")
    return gear


def config_summary(schema: dict[str, Any]) -> list[FormField]:
    """Every config field (nested ones too), for the gear page's settings table."""
    return [f for f in all_fields(build_form(schema, {})) if f.widget != "fieldset"]


def _badges(v: GearVersion) -> list[tuple[str, str]]:
    """``(css modifier, label)`` for each state a version is in besides plain approved."""
    out = []
    if v.status is VersionStatus.pending:
        out.append(("pending", "Pending review"))
    elif v.status is VersionStatus.rejected:
        out.append(("rejected", "Rejected"))
    if v.yanked:
        out.append(("yanked", "Yanked"))
    if v.quarantined:
        out.append(("quarantined", "Quarantined"))
    out.extend(engine_badges(v.manifest))
    return out


def engine_badges(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The "Needs engine" badge of a version this engine cannot run, else none: the
    gear page's versions and the catalog's cards show the same one."""
    if engine_mismatch(manifest, engine_version()) is None:
        return []
    return [("incompatible", f"Needs engine {engine_range(manifest)}")]


def card_badges(gear: Gear) -> list[tuple[str, str]]:
    """A catalog card's badges: its newest listed version's engine badge.

    Read from the versions the search loaded with its page of gears (one query for
    the page), so a card costs no query of its own."""
    latest = queries.latest_public(gear)
    return engine_badges(latest.manifest) if latest is not None else []


@bp.get("/gears/<publisher>/<name>")
@bp.get("/gears/<publisher>/<name>/<version>")
def gear_page(publisher: str, name: str, version: str | None = None) -> str:
    """Everything a business user needs to decide whether to install a gear."""
    gear = _visible_gear(publisher, name)
    viewer = current_viewer()
    visible = [v for v in queries.sorted_versions(gear.versions)
               if queries.can_see_version(viewer, v)]
    latest = queries.latest_public(gear)
    if version is None:
        shown = latest or (visible[0] if visible else None)
    else:
        shown = next((v for v in visible if v.version == version), None)
    if shown is None:
        abort(404, f"{gear.name} has no version {version}" if version else
              f"{gear.name} has no version you can see")
    manifest = shown.manifest
    docs = readme.gear_docs(shown.sha256, manifest.get("changelog"), get_blob_store())
    schema = manifest.get("config_schema") or {}
    user = current_user()
    workspaces = [m.workspace for m in user.workspace_memberships] if user else []
    engine = engine_version()
    mismatch = engine_mismatch(manifest, engine)
    # where to send someone looking at a version this engine cannot run
    runs_here = next((v for v in visible if queries.is_public(v)
                      and engine_mismatch(v.manifest, engine) is None), None)
    return render_template(
        "catalog/gear.html", gear=gear, shown=shown, latest=latest, manifest=manifest,
        versions=visible, badges=_badges, docs=docs, is_latest=shown is latest,
        permissions=[describe_capability(c) for c in capabilities_of(manifest)],
        config_fields=config_summary(schema), secret_formats=SECRET_FORMATS,
        installable=queries.is_public(shown) and mismatch is None, workspaces=workspaces,
        requires=sorted((manifest.get("requires") or {}).items()),
        engine=engine, engine_mismatch=mismatch, runs_here=runs_here)
