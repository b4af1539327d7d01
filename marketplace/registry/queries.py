"""Reading the registry: what a caller may see, search, and serialization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, selectinload

from gears_sdk.versions import Version, runs_on
from marketplace.models import Gear, GearVersion, VersionStatus
from marketplace.registry.search import CatalogQuery, search
from marketplace.registry.signing import VersionSignature
from marketplace.registry.viewer import Viewer
from marketplace.settings import engine_version
from marketplace.vetting.models import VettingReport

MAX_PER_PAGE = 100


def is_public(v: GearVersion) -> bool:
    """Listed and installable by anyone: approved, not yanked, not quarantined."""
    return v.status is VersionStatus.approved and not v.yanked and not v.quarantined


def can_see_version(viewer: Viewer, v: GearVersion) -> bool:
    """Approved versions stay reachable by exact version even when yanked."""
    return v.status is VersionStatus.approved or viewer.manages(v.gear)


def sorted_versions(versions: list[GearVersion]) -> list[GearVersion]:
    """Newest first, by semver precedence."""
    return sorted(versions, key=lambda v: Version.parse(v.version), reverse=True)


def latest_public(gear: Gear) -> GearVersion | None:
    return next((v for v in sorted_versions(gear.versions) if is_public(v)), None)


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    kind: str | None = None
    category: str | None = None
    publisher: str | None = None
    page: int = 1
    per_page: int = 20


def search_gears(session: Session, query: SearchQuery, viewer: Viewer) -> tuple[list[Gear], int]:
    """Gears matching ``query``; non-admins see only gears with a public version.

    The same full-text search as the catalog pages (most installed first when
    there is no text to rank by).
    """

    result = search(session, CatalogQuery(
        q=query.q, kind=query.kind or "", category=query.category or "",
        publisher=query.publisher or "", page=query.page, per_page=query.per_page,
    ), viewer, with_facets=False)
    return result.gears, result.total


def get_gear(session: Session, publisher: str, name: str) -> Gear | None:
    return session.scalar(
        select(Gear).where(Gear.name == f"{publisher}/{name}")
        .options(selectinload(Gear.versions), selectinload(Gear.publisher))
    )


# Built once: every download looks a version up by name, and building the
# statement cost more than running it.
_VERSION_BY_NAME = (
    select(GearVersion).join(Gear, GearVersion.gear_id == Gear.id)
    .where(Gear.name == bindparam("gear_name"), GearVersion.version == bindparam("version"))
)


def get_version(session: Session, publisher: str, name: str, version: str) -> GearVersion | None:
    return session.scalar(_VERSION_BY_NAME,
                          {"gear_name": f"{publisher}/{name}", "version": version})


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt is not None else None


def version_json(v: GearVersion, base_url: str, *, full: bool = True,
                 private: bool = False) -> dict[str, Any]:
    """A version as the API shows it.

    Everyone sees the signature, its key id and the signed file hashes (the
    runtime verifies them at every load); ``private`` (the publisher's
    members and admins) adds the vetting state and its findings.
    """
    name = v.gear.name
    out: dict[str, Any] = {
        "name": name,
        "version": v.version,
        "status": v.status.value,
        "yanked": v.yanked,
        "quarantined": v.quarantined,
        "created_at": _iso(v.created_at),
        # the engine versions it runs on, and whether this server's engine is one
        "engine": v.manifest.get("engine"),
        "engine_compatible": runs_on(v.manifest.get("engine"), engine_version()),
    }
    if not full:
        return out
    api = f"{base_url}/api/v1/gears/{name}/{v.version}"
    out.update(
        kind=v.gear.kind,
        title=v.manifest.get("title"),
        summary=v.manifest.get("summary"),
        yank_reason=v.yank_reason,
        quarantine_reason=v.quarantine_reason,
        review_reason=v.review_reason,
        reviewed_at=_iso(v.reviewed_at),
        sha256=v.sha256,
        size=v.size,
        manifest=v.manifest,
        url=api,
        download_url=f"{api}/download",
        web_url=f"{base_url}/gears/{name}",
    )
    out.update(trust_json(v, private=private))
    return out


def trust_json(v: GearVersion, *, private: bool) -> dict[str, Any]:
    """Signature fields for everyone; vetting state and findings when ``private``."""
    from sqlalchemy.orm import object_session


    session = object_session(v)
    sig = session.get(VersionSignature, v.id) if session is not None else None
    out: dict[str, Any] = {
        "signature": sig.signature if sig else None,
        "key_id": sig.key_id if sig else None,
        "files": dict(sig.files) if sig else None,
    }
    if private and session is not None:
        report = session.scalar(select(VettingReport).where(VettingReport.version_id == v.id))
        out["vetting"] = (None if report is None else
                          {"state": report.state.value, "started_at": _iso(report.started_at),
                           "finished_at": _iso(report.finished_at)})
        out["findings"] = list(report.findings or []) if report else []
    return out


def gear_json(gear: Gear, viewer: Viewer, base_url: str) -> dict[str, Any]:
    """A gear with the versions this viewer may see."""
    latest = latest_public(gear)
    visible = [v for v in sorted_versions(gear.versions) if can_see_version(viewer, v)]
    return {
        "name": gear.name,
        "publisher": gear.name.split("/", 1)[0],
        "kind": gear.kind,
        "title": gear.title,
        "summary": gear.summary,
        "categories": list(gear.categories or []),
        "latest_version": latest.version if latest else None,
        "install_count": gear.install_count,
        "created_at": _iso(gear.created_at),
        "updated_at": _iso(gear.updated_at),
        "url": f"{base_url}/api/v1/gears/{gear.name}",
        "web_url": f"{base_url}/gears/{gear.name}",
        "versions": [version_json(v, base_url, full=False) for v in visible],
    }
