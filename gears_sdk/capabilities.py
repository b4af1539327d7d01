"""The one table of capabilities a gear can be granted.

Everything a gear may do beyond computing is a capability its `gear.json`
declares under `permissions`. Each kind below is one row of the table in
`gears_sdk.capabilities`: where the manifest declares it, the sentence shown
at consent, and the rule that enforces it. The consent screen, the
installations API's `capabilities`, the vetting capability diff, the
runtime's checks and this page all derive from that table, so what a user is
shown is exactly what is enforced.

A capability is written `<kind>:<argument>`, e.g. `network:api.example.com`,
`profile.write:traits.rfm`, `catalog.read:price`, `events.write:purchase`,
`secrets:api_token`. Field lists take dotted paths and `*`
(`attributes.*`, or `*` for every field, property or event type). Catalog
items always reach a gear with their `id`; a connector's record always
carries the `id` or `user_id` it writes to. The older form
`"catalog": ["read", "write"]` (and the same for `events`) still validates
and grants `*` for each word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gears_sdk.manifest import Manifest, Permissions


def _host(pattern: str) -> str:
    host, _, port = pattern.partition(":")
    where = f"any sub-domain of {host[2:]}" if host.startswith("*.") else host
    return f"{where} on port {port}" if port else where


def _profile(verb: str) -> Callable[[str], str]:
    def say(field: str) -> str:
        if field in ("*", ""):
            return f"{verb} everything in your profiles"
        if field.endswith(".*"):
            return f"{verb} your profiles' {field[:-2]} (all of them)"
        if "." not in field:
            return f"{verb} your profiles' {field}"
        return f"{verb} the profile field {field}"
    return say


def _catalog_read(field: str) -> str:
    if field == "*":
        return "Read every field of your catalog items"
    if field.endswith(".*"):
        return f"Read your catalog items' {field[:-2]} (all of them)"
    return f"Read the catalog field {field} of your items"


def _catalog_write(field: str) -> str:
    if field == "*":
        return "Add catalog items and change any of their fields"
    if field.endswith(".*"):
        return f"Add catalog items and change their {field[:-2]} (all of them)"
    return f"Add catalog items and change their {field}"


def _events_read(prop: str) -> str:
    if prop == "*":
        return "Read every property of your events"
    return f"Read the event property {prop}"


def _events_write(etype: str) -> str:
    return "Record events of any type" if etype == "*" else f"Record {etype} events"


@dataclass(frozen=True)
class CapabilityKind:
    """One row of the table: a kind of capability and everything derived from it."""

    #: The prefix of its capability strings, and its key in :data:`~gears_sdk.permissions.ENFORCERS`.
    key: str
    #: Where ``gear.json`` declares it.
    declared_at: str
    #: The arguments a manifest's permissions grant.
    granted: Callable[[Permissions], Iterable[str]]
    #: The sentence shown at consent for one argument.
    describe: Callable[[str], str]
    #: Where the runtime refuses what is not granted (for people: docs and reviews).
    enforced: str


CAPABILITIES: tuple[CapabilityKind, ...] = (
    CapabilityKind("network", "permissions.network", lambda p: p.network,
                   lambda a: f"Send requests to {_host(a)}",
                   "`ctx.http` refuses any other host or port"),
    CapabilityKind("profile.read", "permissions.profile.read", lambda p: p.profile.read,
                   _profile("Read"), "profiles reach the gear holding only these fields"),
    CapabilityKind("profile.write", "permissions.profile.write", lambda p: p.profile.write,
                   _profile("Change"),
                   "patches and connector profile records touching other fields are refused"),
    CapabilityKind("catalog.read", "permissions.catalog.read", lambda p: p.catalog.read,
                   _catalog_read, "catalog items reach the gear with their id and these fields"),
    CapabilityKind("catalog.write", "permissions.catalog.write", lambda p: p.catalog.write,
                   _catalog_write, "connector item records writing other fields are refused"),
    CapabilityKind("events.read", "permissions.events.read", lambda p: p.events.read,
                   _events_read, "event properties reach the gear holding only these names"),
    CapabilityKind("events.write", "permissions.events.write", lambda p: p.events.write,
                   _events_write, "connector event records of other types are refused"),
    CapabilityKind("secrets", "permissions.secrets", lambda p: p.secrets,
                   lambda a: f"Use the secret {a}",
                   "`ctx.secrets.get` refuses any other name"),
)
_BY_KEY = {k.key: k for k in CAPABILITIES}


@dataclass(frozen=True, order=True)
class Capability:
    """One granted capability: ``kind`` (a table key) and its argument."""

    kind: str
    arg: str

    @property
    def id(self) -> str:
        """The capability string, e.g. ``catalog.read:price``."""
        return f"{self.kind}:{self.arg}"

    @property
    def description(self) -> str:
        return _BY_KEY[self.kind].describe(self.arg)

    def to_dict(self) -> dict[str, str]:
        """``{"capability", "description"}``: what the API and the consent screen show."""
        return {"capability": self.id, "description": self.description}


def _permissions(source: Any) -> Permissions:
    if isinstance(source, Permissions):
        return source
    if isinstance(source, Manifest):
        return source.permissions
    if isinstance(source, dict):
        return Permissions.from_dict(source.get("permissions") or {})
    return Permissions()


def capabilities(source: Any) -> list[Capability]:
    """The sorted capabilities a manifest (dict or typed), or its permissions, grant.

    ``None`` grants nothing (a fresh install's "before").
    """
    perms = _permissions(source)
    caps = {Capability(k.key, str(arg)) for k in CAPABILITIES for arg in k.granted(perms)}
    return sorted(caps)


def capability_ids(source: Any) -> list[str]:
    """:func:`capabilities` as sorted strings."""
    return [c.id for c in capabilities(source)]


def parse_capability(cap: str) -> Capability | None:
    """The capability a string names, or ``None`` for a kind the table does not know."""
    kind, sep, arg = cap.partition(":")
    return Capability(kind, arg) if sep and kind in _BY_KEY else None


#: Capability strings of the older list form, still held by installations consented
#: before the table grew fields; they are described, never granted any more.
_OLDER = {"catalog:read": "Read the product catalog", "catalog:write": "Change the product catalog",
          "events:read": "Read your events", "events:write": "Record new events"}


def describe_capability(cap: str) -> str:
    """The consent sentence for a capability string; an unknown one is shown as it is."""
    parsed = parse_capability(cap)
    return parsed.description if parsed is not None else _OLDER.get(cap, cap)


@dataclass(frozen=True)
class CapabilityDiff:
    """What a new version changes in what a gear may do."""

    added: list[str]
    removed: list[str]
    unchanged: list[str]

    @property
    def grows(self) -> bool:
        """Whether the new version asks for anything new (consent and review again)."""
        return bool(self.added)


def capability_diff(old: Any, new: Any) -> CapabilityDiff:
    """Compare the capabilities of two manifests (``old=None``: a first install or version)."""
    before, after = set(capability_ids(old)), set(capability_ids(new))
    return CapabilityDiff(added=sorted(after - before), removed=sorted(before - after),
                          unchanged=sorted(before & after))
