"""Choose the concrete gear versions a workspace runs.

A workspace installs gears by range (``acme/reco ~1.4.0``); gears require
other gears by range; every gear names the engine versions it works with.
:func:`resolve` turns all of that into one version per gear, using
``resolvelib``'s backtracking resolver, so a change in one gear's
requirements never silently breaks another's.

Rules, in the order they are applied:

* Only versions a :class:`CandidateSource` offers are considered. The source
  filters review state: :class:`DbCandidateSource` offers ``approved``
  versions that are not quarantined. Quarantined versions are never offered,
  not even when pinned: quarantine blocks a version from loading anywhere.
* **Yanked versions** are chosen only when a requirement pins exactly that
  version (``=1.2.0`` or ``1.2.0``). Yank hides a version from new installs
  but must not break a workspace that already runs it: the workspace keeps its
  installed version pinned, and :class:`DbCandidateSource` offers that yanked
  version only when the caller lists it in ``allow_versions``.
* Versions whose ``engine`` range excludes the running engine are dropped.
* Pre-releases follow npm: a range matches one only when it names a
  pre-release of the same ``major.minor.patch`` (see :mod:`gears_sdk.versions`).
* Among the versions left, the highest that satisfies every requirement on
  that gear (from the workspace and from every chosen dependent) wins.

A failure raises :class:`ResolutionError`, whose message names the gears and
the ranges that clash and whose ``causes`` list says the same in structured
form. Dependency cycles are fine: the resolver pins each gear once and the
output order breaks cycles deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import semver
from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep
from resolvelib.structs import RequirementInformation

from gears_sdk import ENGINE_VERSION
from gears_sdk.errors import GearsError, RangeError
from gears_sdk.versions import Range, parse_range, parse_version
from marketplace.models import Gear, GearVersion, VersionStatus

log = logging.getLogger(__name__)

#: Backtracking rounds before giving up; real workspaces need a few dozen.
MAX_ROUNDS = 2000

WORKSPACE = "the workspace"


@dataclass(frozen=True)
class Candidate:
    """One installable version of a gear, as the resolver sees it."""

    name: str
    version: semver.Version
    requires: dict[str, Range] = field(default_factory=dict, compare=False)
    engine: Range = field(default_factory=lambda: parse_range("*"), compare=False)
    sha256: str = ""
    yanked: bool = False

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Requirement:
    """``name`` must satisfy ``range``; ``parent`` is who asks (``None``: the workspace)."""

    name: str
    range: Range
    parent: Candidate | None = None

    @property
    def pinned(self) -> semver.Version | None:
        """The exact version this requirement names, if it names exactly one."""
        if len(self.range.sets) == 1 and len(self.range.sets[0]) == 1:
            comp = self.range.sets[0][0]
            if comp.op == "=":
                return comp.version
        return None

    def __str__(self) -> str:
        return f"{self.name} {self.range}"


class CandidateSource(Protocol):
    """Where candidates come from: the registry database, a test's dict, …"""

    def versions(self, name: str) -> list[Candidate]:
        """Every version of ``name`` that may be installed (any order)."""
        ...


@dataclass(frozen=True)
class Cause:
    """One reason a resolution failed, for programs (the UI, the API).

    ``kind`` is ``conflict`` (ranges from several dependents exclude each
    other), ``no_match`` (no version satisfies a range), ``engine`` (the
    versions that match all need another engine), ``yanked`` (only yanked
    versions match and none is pinned) or ``unknown`` (no installable version
    of the gear at all).
    """

    kind: str
    gear: str
    message: str
    requirements: tuple[tuple[str, str], ...] = ()  # (who requires, range)


class ResolutionError(GearsError):
    """No set of versions satisfies every requirement; ``causes`` says why."""

    code = "resolution_failed"

    def __init__(self, causes: Sequence[Cause], *, message: str | None = None):
        self.causes = list(causes)
        text = message or "; ".join(c.message for c in self.causes) or "no resolution"
        super().__init__(text, hint="change the installed ranges, or upgrade or uninstall the "
                                    "gears named above")

    def explain(self) -> str:
        """A multi-line explanation, one cause per line."""
        return "cannot resolve the workspace's gears:\n" + "\n".join(
            f"  - {c.message}" for c in self.causes)


class Resolution(dict[str, Candidate]):
    """``{name: Candidate}`` in dependency order: every gear after the gears it requires."""


class InMemorySource:
    """A :class:`CandidateSource` over a list of candidates (tests, tools, previews)."""

    def __init__(self, candidates: Iterable[Candidate]):
        self._by_name: dict[str, list[Candidate]] = {}
        for c in candidates:
            self._by_name.setdefault(c.name, []).append(c)

    def versions(self, name: str) -> list[Candidate]:
        return list(self._by_name.get(name, ()))


# ---------------------------------------------------------------------------
# the resolvelib provider
# ---------------------------------------------------------------------------


class _Provider(AbstractProvider[Requirement, Candidate, str]):
    """Adapts a :class:`CandidateSource` to resolvelib; see the module rules."""

    def __init__(self, source: CandidateSource, engine: semver.Version):
        self.source = source
        self.engine = engine
        self._cache: dict[str, list[Candidate]] = {}

    def all_versions(self, name: str) -> list[Candidate]:
        """Every offered version, highest first, the same objects every time
        (resolvelib tracks pinned candidates by identity)."""
        if name not in self._cache:
            self._cache[name] = sorted(self.source.versions(name),
                                       key=lambda c: c.version, reverse=True)
        return self._cache[name]

    def usable(self, name: str) -> list[Candidate]:
        return [c for c in self.all_versions(name) if c.engine.matches(self.engine)]

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(self, identifier: str, resolutions: Mapping[str, Candidate],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Iterator[RequirementInformation[
                           Requirement, Candidate]]],
                       backtrack_causes: Sequence[RequirementInformation[
                           Requirement, Candidate]]) -> Any:
        # Decide pinned and conflict-prone gears first: fewer dead ends.
        infos = list(information[identifier])
        pinned = any(i.requirement.pinned is not None for i in infos)
        in_conflict = any(c.requirement.name == identifier for c in backtrack_causes)
        return (not pinned, not in_conflict, sum(1 for _ in candidates[identifier]),
                identifier)

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Requirement]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        pins = {r.pinned for r in reqs}
        return [c for c in self.usable(identifier)
                if c.version not in bad
                and (not c.yanked or c.version in pins)
                and all(r.range.matches(c.version) for r in reqs)]

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        return requirement.range.matches(candidate.version)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        return [Requirement(name, rng, candidate)
                for name, rng in sorted(candidate.requires.items()) if name != candidate.name]


class _Reporter(BaseReporter[Requirement, Candidate, str]):
    """Logs backtracking, so a slow or surprising resolution can be understood."""

    def rejecting_candidate(self, criterion: Any, candidate: Candidate) -> None:
        log.debug("rejecting %s", candidate)

    def pinning(self, candidate: Candidate) -> None:
        log.debug("pinning %s", candidate)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------


def resolve(requirements: Iterable[tuple[str, str]], source: CandidateSource,
            engine_version: str | semver.Version = ENGINE_VERSION,
            *, max_rounds: int = MAX_ROUNDS) -> Resolution:
    """Pick one version per gear for a workspace's installations.

    ``requirements`` are ``(gear name, range)`` pairs, one per installation.
    Raises :class:`ResolutionError` naming the clashing gears and ranges.
    """
    engine = (parse_version(engine_version) if isinstance(engine_version, str)
              else engine_version)
    roots = []
    for name, text in requirements:
        try:
            roots.append(Requirement(name, parse_range(text)))
        except RangeError as exc:
            raise ResolutionError([Cause("invalid_range", name, f"{name}: {exc.message}",
                                         ((WORKSPACE, str(text)),))]) from None
    provider = _Provider(source, engine)
    resolver: Resolver[Requirement, Candidate, str] = Resolver(provider, _Reporter())
    try:
        result = resolver.resolve(roots, max_rounds=max_rounds)
    except ResolutionImpossible as exc:
        raise ResolutionError(_causes(provider, list(exc.causes))) from None
    except ResolutionTooDeep as exc:
        raise ResolutionError([Cause("too_deep", "", f"gave up after {exc.round_count} rounds "
                                     "of backtracking; pin some gears to narrower ranges")]
                              ) from None
    return _ordered(result.mapping, result.graph)


def explain(name: str, range_text: str, source: CandidateSource,
            engine_version: str | semver.Version = ENGINE_VERSION) -> str | None:
    """Why ``name`` within ``range_text`` cannot be installed on its own, or ``None``.

    The catalog uses it to explain an unknown gear or a range that matches
    nothing before a full resolution is attempted.
    """
    engine = (parse_version(engine_version) if isinstance(engine_version, str)
              else engine_version)
    provider = _Provider(source, engine)
    cause = _single(provider, name, [(WORKSPACE, Requirement(name, parse_range(range_text)))])
    return None if cause is None else cause.message


def _ordered(mapping: Mapping[str, Candidate], graph: Any) -> Resolution:
    """Dependencies before dependents; a cycle is cut where it is first re-entered."""
    out = Resolution()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in out or name in visiting or name not in mapping:
            return
        visiting.add(name)
        for child in sorted(c for c in graph.iter_children(name) if c is not None):
            visit(child)
        out[name] = mapping[name]

    for root in sorted(c for c in graph.iter_children(None) if c is not None):
        visit(root)
    for name in sorted(mapping):  # anything reachable only through a cycle
        visit(name)
    return out


# ---------------------------------------------------------------------------
# turning resolvelib's causes into sentences
# ---------------------------------------------------------------------------


def _who(parent: Candidate | None) -> str:
    return WORKSPACE if parent is None else str(parent)


def _causes(provider: _Provider,
            infos: list[RequirementInformation[Requirement, Candidate]]) -> list[Cause]:
    by_name: dict[str, dict[tuple[str, str], Requirement]] = {}
    for info in infos:
        req = info.requirement
        by_name.setdefault(req.name, {})[(_who(info.parent), str(req.range))] = req
    causes: list[Cause] = []
    for name, reqs in by_name.items():
        pairs = sorted(((who, req) for (who, _), req in reqs.items()),
                       key=lambda p: (p[0] != WORKSPACE, p[0], str(p[1].range)))
        single = next((c for who, r in pairs if (c := _single(provider, name, [(who, r)]))),
                      None)
        causes.append(single or _conflict(provider, name, pairs))
    return causes


def _versions(cands: Iterable[Candidate]) -> str:
    return ", ".join(str(c.version) for c in sorted(cands, key=lambda c: c.version)) or "none"


def _single(provider: _Provider, name: str,
            reqs: list[tuple[str, Requirement]]) -> Cause | None:
    """The cause when these requirements alone already fail, else ``None``."""
    ranges = tuple((who, str(r.range)) for who, r in reqs)
    shown = " and ".join(str(r.range) for _, r in reqs)
    offered = provider.all_versions(name)
    if not offered:
        why = getattr(provider.source, "why_unavailable", None)
        detail = why(name) if callable(why) else None
        return Cause("unknown", name, detail or f"no installable version of {name} exists "
                     "(unknown gear, or none of its versions is approved)", ranges)
    matching = [c for c in offered if all(r.range.matches(c.version) for _, r in reqs)]
    if not matching:
        listed = [c for c in offered if not c.yanked]
        return Cause("no_match", name, f"no version of {name} satisfies {shown} "
                     f"(available: {_versions(listed)})", ranges)
    fits = [c for c in matching if c.engine.matches(provider.engine)]
    if not fits:
        needs = sorted({str(c.engine) for c in matching})
        return Cause("engine", name, f"{name}: every version requiring engine "
                     f"{' or '.join(needs)} is incompatible with this engine "
                     f"({provider.engine}); versions matching {shown}: {_versions(matching)}",
                     ranges)
    pins = {r.pinned for _, r in reqs}
    if all(c.yanked and c.version not in pins for c in fits):
        return Cause("yanked", name, f"every version of {name} that satisfies {shown} is "
                     f"yanked ({_versions(fits)}); pin one exactly to keep using it", ranges)
    return None


def _conflict(provider: _Provider, name: str,
              pairs: list[tuple[str, Requirement]]) -> Cause:
    ranges = tuple((who, str(r.range)) for who, r in pairs)
    usable = provider.usable(name)
    for i, (who_a, a) in enumerate(pairs):
        for who_b, b in pairs[i + 1:]:
            if not any(a.range.matches(c.version) and b.range.matches(c.version) for c in usable):
                # Name the dependent first: it is the side the user did not write.
                first, second = ((who_b, b), (who_a, a)) if who_a == WORKSPACE else \
                    ((who_a, a), (who_b, b))
                return Cause("conflict", name,
                             f"{first[0]} requires {name} {first[1].range}, but {second[0]} "
                             f"requires {name} {second[1].range}", ranges)
    listing = "; ".join(f"{who} requires {r.range}" for who, r in pairs)
    return Cause("conflict", name, f"no version of {name} satisfies all of: {listing} "
                 f"(available: {_versions(usable)})", ranges)


# ---------------------------------------------------------------------------
# the registry database as a source
# ---------------------------------------------------------------------------


class DbCandidateSource:
    """Candidates from the registry's ``GearVersion`` rows.

    Offers approved, non-quarantined versions. Yanked versions are offered
    (flagged ``yanked``) only when listed in ``allow_versions``
    (``{name: {version, …}}``), which is how a workspace keeps an installed
    version after it was yanked; the resolver still takes a yanked version only
    when a requirement pins it exactly.
    """

    def __init__(self, session: Any, *,
                 allow_versions: Mapping[str, Iterable[str]] | None = None):
        self.session = session
        self.allow_versions = {k: set(v) for k, v in (allow_versions or {}).items()}

    def versions(self, name: str) -> list[Candidate]:
        from sqlalchemy import select


        rows = self.session.scalars(
            select(GearVersion).join(Gear).where(
                Gear.name == name,
                GearVersion.status == VersionStatus.approved,
                GearVersion.quarantined.is_(False),
            )).all()
        allowed = self.allow_versions.get(name, set())
        out = []
        for row in rows:
            if row.yanked and row.version not in allowed:
                continue
            try:
                out.append(candidate_from_manifest(row.manifest, row.sha256, yanked=row.yanked))
            except (GearsError, KeyError, TypeError) as exc:
                # Stored manifests were validated at publish; one that no longer
                # parses must not make every workspace using the gear unresolvable.
                log.error("skipping %s %s: unreadable stored manifest: %s",
                          name, row.version, exc)
        return out

    def why_unavailable(self, name: str) -> str:
        """A sentence saying why ``name`` has no installable version."""
        from sqlalchemy import select


        gear = self.session.scalars(select(Gear).where(Gear.name == name)).first()
        released = [v for v in gear.versions
                    if v.status is VersionStatus.approved] if gear is not None else []
        if not released:
            # Unreleased versions are the publisher's business: such a gear does not exist
            # for anyone resolving (the registry answers 404 for it too).
            return f"there is no gear named {name}"
        states = sorted("quarantined" if v.quarantined else "yanked" if v.yanked else "approved"
                        for v in released)
        summary = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)) or "none"
        return f"{name} has no installable version (versions: {summary})"


def candidate_from_manifest(manifest: Mapping[str, Any], sha256: str, *,
                            yanked: bool = False) -> Candidate:
    """A candidate from a ``gear.json`` document and its archive's digest."""
    return Candidate(
        name=manifest["name"],
        version=parse_version(manifest["version"]),
        requires={k: parse_range(v) for k, v in (manifest.get("requires") or {}).items()},
        engine=parse_range(manifest.get("engine") or "*"),
        sha256=sha256,
        yanked=yanked,
    )
