"""Which version an install or upgrade would get, and what it would need.

:func:`plan_install` runs the resolver (:mod:`.resolver`) over the whole workspace: every
installed gear pinned to the version it runs (so installing one gear never
moves another), plus the requested gear at the requested range. It answers
before anything changes, so the consent screen can show the chosen version,
its capabilities and what it needs, and the install itself uses the same plan.

Rules:

* Only approved, non-yanked, non-quarantined versions can be newly chosen
  (the resolver's database source filters them). A yanked version that a
  workspace already runs stays acceptable for that workspace.
* A gear's ``requires`` must already be installed in the workspace: the
  marketplace never installs dependencies behind the user's back (each has
  its own capabilities to consent to). A missing one is refused with
  ``missing_dependency``, naming the gear and range to install first.
* A version whose ``engine`` range excludes the engine this server runs
  (:func:`marketplace.settings.engine_version`) is refused with
  ``engine_incompatible`` (409) when asked for exactly, and never chosen for
  a range.
* An installed gear whose installed version cannot run on this engine (it is
  ``suspended``) is left out of the workspace's pins, like a quarantined one:
  it must not make every other install in the workspace unresolvable.
* Anything else the resolver cannot satisfy is refused with ``unresolvable``
  (409), its explanation in the message and one detail per cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gears_sdk.errors import RangeError
from gears_sdk.versions import is_valid_version, parse_range, parse_version
from gears_sdk.versions import runs_on as runs_on_engine
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, VersionStatus, Workspace
from marketplace.settings import engine_version
from marketplace.workspaces.capabilities import CapabilityDiff, capabilities_of, capability_diff
from marketplace.workspaces.models import Installation
from marketplace.workspaces.resolver import (
    WORKSPACE,
    Cause,
    DbCandidateSource,
    ResolutionError,
    resolve,
)


@dataclass(frozen=True)
class Dependency:
    """One entry of the chosen version's ``requires`` and how the workspace meets it."""

    gear: str
    range: str
    installed_version: str | None

    @property
    def satisfied(self) -> bool:
        return self.installed_version is not None and \
            parse_range(self.range).matches(self.installed_version)


@dataclass(frozen=True)
class InstallPlan:
    """The outcome of resolving an install or upgrade, before anything changes.

    ``constraint`` is what will be stored: the range asked for, or the exact
    chosen version when none was. ``current`` is the installation being
    upgraded (``None`` for a fresh install) and ``diff`` compares its
    version's capabilities with the chosen one's.
    """

    gear: Gear
    version: GearVersion
    constraint: str
    capabilities: list[str]
    dependencies: list[Dependency]
    resolution: dict[str, str]
    diff: CapabilityDiff
    current: Installation | None = None
    current_version: GearVersion | None = field(default=None)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.version.manifest


def workspace_installations(session: Session, workspace: Workspace) -> list[Installation]:
    """The workspace's installations, by gear name."""
    rows = session.scalars(select(Installation).join(Gear, Installation.gear_id == Gear.id)
                           .where(Installation.workspace_id == workspace.id)
                           .order_by(Gear.name)).all()
    return list(rows)


def engine_range(manifest: dict[str, Any]) -> str:
    """The ``engine`` range a version's manifest declares (``*`` when it declares none)."""
    return str(manifest.get("engine") or "*")


def runs_on(manifest: dict[str, Any], engine: str) -> bool:
    """Whether a version with ``manifest`` may run on engine version ``engine``."""
    return runs_on_engine(manifest.get("engine"), engine)


def engine_mismatch(manifest: dict[str, Any], engine: str) -> str | None:
    """``"needs engine >=2.0.0; this engine is 1.3.0"`` when the version cannot run on
    ``engine``, else ``None``: what the catalog, the install flow and a suspended
    installation say."""
    if runs_on(manifest, engine):
        return None
    return f"needs engine {engine_range(manifest)}; this engine is {engine}"


def find_gear(session: Session, gear_name: str) -> Gear:
    """The gear called ``gear_name``; 404 ``gear_not_found`` otherwise.

    A gear none of whose versions was ever approved does not exist here, exactly as
    the registry answers 404 for it to anyone outside its publisher: a plan must not
    tell a workspace member that another publisher's unreleased gear exists."""
    gear = session.scalar(select(Gear).where(Gear.name == gear_name, Gear.versions.any(
        GearVersion.status == VersionStatus.approved))) if isinstance(gear_name, str) else None
    if gear is None:
        raise MarketplaceError(404, "gear_not_found", f"there is no gear named {gear_name!r}",
                               [{"path": "$.gear", "message": "unknown gear",
                                 "code": "not_found"}])
    return gear


def find_version(session: Session, gear: Gear, version: str) -> GearVersion:
    row = session.scalar(select(GearVersion).where(GearVersion.gear_id == gear.id,
                                                   GearVersion.version == version))
    if row is None:  # the resolver only offers existing rows; a race with a delete
        raise MarketplaceError(409, "unresolvable", f"{gear.name} {version} no longer exists")
    return row


def _check_spec(version_spec: str | None) -> str | None:
    if version_spec is None:
        return None
    if not isinstance(version_spec, str) or not version_spec.strip():
        raise MarketplaceError(422, "invalid_version", "the version must be a version or range "
                               "such as 1.2.0 or ^1.2.0",
                               [{"path": "$.version", "message": "must not be empty",
                                 "code": "invalid_range"}])
    try:
        parse_range(version_spec.strip())
    except RangeError as exc:
        raise MarketplaceError(422, "invalid_version", f"{version_spec!r} is not a version or "
                               f"range: {exc.message}",
                               [{"path": "$.version", "message": exc.message,
                                 "code": "invalid_range"}]) from None
    return version_spec.strip()


def plan_install(session: Session, workspace: Workspace, gear_name: str,
                 version_spec: str | None = None) -> InstallPlan:
    """Resolve ``gear_name`` at ``version_spec`` (newest when ``None``) in ``workspace``.

    When the gear is already installed this plans an upgrade (or downgrade):
    ``version_spec=None`` then means "the newest version its stored constraint
    allows". Raises ``gear_not_found`` (404), ``invalid_version`` (422),
    ``engine_incompatible`` (409), ``missing_dependency`` (409) or ``unresolvable`` (409).
    """
    gear = find_gear(session, gear_name)
    spec = _check_spec(version_spec)
    engine = engine_version()
    _check_engine(session, gear, spec, engine)
    installed = workspace_installations(session, workspace)
    current = next((i for i in installed if i.gear_id == gear.id), None)
    wanted = spec or (current.constraint if current is not None else "*")
    names = {i.gear.name: i.version for i in installed}
    blocked = _unrunnable(session, installed, engine)
    # A quarantined version cannot load anywhere and a suspended one cannot load on this
    # engine, so neither can be pinned; leaving them out keeps one such gear from
    # blocking every other change in the workspace.
    roots = [(name, f"={version}") for name, version in names.items()
             if name != gear.name and name not in blocked]
    roots.append((gear.name, wanted))
    source = DbCandidateSource(session, allow_versions={n: {v} for n, v in names.items()})
    try:
        resolution = resolve(roots, source, engine)
    except ResolutionError as exc:
        raise _refusal(gear.name, exc, names) from None
    chosen = resolution[gear.name]
    version = find_version(session, gear, str(chosen.version))
    deps = [Dependency(name, str(rng), names.get(name))
            for name, rng in sorted(chosen.requires.items())]
    missing = [d for d in deps if d.installed_version is None]
    if missing:
        raise _missing(f"{gear.name} {chosen.version}", missing)
    current_version = (find_version(session, gear, current.version)
                       if current is not None else None)
    return InstallPlan(
        gear=gear, version=version,
        constraint=spec or (current.constraint if current is not None else version.version),
        capabilities=capabilities_of(version.manifest), dependencies=deps,
        resolution={name: str(c.version) for name, c in resolution.items()},
        diff=capability_diff(current_version.manifest if current_version else None,
                             version.manifest),
        current=current, current_version=current_version,
    )


def _check_engine(session: Session, gear: Gear, spec: str | None, engine: str) -> None:
    """Refuse an exact version that cannot run on this engine, saying which it needs."""
    if spec is None:
        return
    exact = spec.removeprefix("=").strip()
    if not is_valid_version(exact):
        return
    row = session.scalar(select(GearVersion).where(GearVersion.gear_id == gear.id,
                                                   GearVersion.version == exact))
    why = engine_mismatch(row.manifest, engine) if row is not None else None
    if row is not None and why is not None:
        raise MarketplaceError(409, "engine_incompatible", f"{gear.name} {exact} {why}",
                               [{"path": "$.version", "message": why,
                                 "code": "engine_incompatible", "gear": gear.name,
                                 "engine": engine_range(row.manifest)}])


def _unrunnable(session: Session, installed: list[Installation], engine: str) -> set[str]:
    """Names of installed gears whose installed version is quarantined or cannot run on
    ``engine``."""
    if not installed:
        return set()
    rows = session.execute(
        select(Gear.name, GearVersion.version, GearVersion.quarantined, GearVersion.manifest)
        .join(GearVersion, GearVersion.gear_id == Gear.id)
        .where(Gear.id.in_([i.gear_id for i in installed]))).all()
    pinned = {(i.gear.name, i.version) for i in installed}
    return {name for name, version, quarantined, manifest in rows
            if (name, version) in pinned and (quarantined or not runs_on(manifest, engine))}


def _missing(what: str, missing: list[Dependency]) -> MarketplaceError:
    needs = "; ".join(f"{d.gear} {d.range}" for d in missing)
    return MarketplaceError(
        409, "missing_dependency",
        f"{what} requires {needs}, which is not installed in this workspace; install "
        f"{'it' if len(missing) == 1 else 'them'} first",
        [{"path": "$.gear", "message": f"install {d.gear} {d.range} first",
          "code": "missing_dependency", "gear": d.gear, "range": d.range} for d in missing])


def _refusal(gear: str, exc: ResolutionError, installed: dict[str, str]) -> MarketplaceError:
    """``missing_dependency`` when a cause is a gear the workspace lacks, else
    ``unresolvable`` with the resolver's explanation."""
    absent = [c for c in exc.causes if c.gear and c.gear != gear and c.gear not in installed]
    if absent:
        return _missing(gear, [Dependency(c.gear, c.requirements[0][1] if c.requirements
                                          else "*", None) for c in absent])
    return MarketplaceError(
        409, "unresolvable",
        f"cannot install {gear}: " + "; ".join(_explain(c, installed) for c in exc.causes),
        [{"path": "$.version" if c.gear == gear else "$.gear", "message": c.message,
          "code": c.kind, "gear": c.gear} for c in exc.causes])


def _explain(cause: Cause, installed: dict[str, str]) -> str:
    """The resolver's sentence, said from the workspace's side when the clash is with a
    version the workspace already runs (the resolver only sees it as a pin)."""
    if cause.gear not in installed:
        return cause.message
    others = [(who, rng) for who, rng in cause.requirements if who != WORKSPACE]
    if not others:
        return cause.message
    runs = f"{cause.gear} {installed[cause.gear]}"
    return "; ".join(f"{who} requires {cause.gear} {rng}, but this workspace runs {runs}"
                     for who, rng in others)


def check_version_spec(version_spec: str | None) -> str | None:
    """``version_spec`` stripped, or 422 ``invalid_version``; exposed for form validation."""
    return _check_spec(version_spec)


def is_newer(candidate: str, than: str) -> bool:
    """Whether version ``candidate`` is above ``than`` in semver precedence."""
    return parse_version(candidate) > parse_version(than)
