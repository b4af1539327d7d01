"""The rules behind a manifest's ``permissions``, as plain functions.

The runtime enforces them around every hook call and :mod:`gears_sdk.testing`
applies the same functions in-process, so a gear author meets a permission
problem in a unit test rather than in production.

* **network**: ``api.example.com`` allows that host on the scheme's default
  port; ``api.example.com:8443`` allows exactly that port; ``*.example.com``
  allows any sub-domain (not ``example.com`` itself).
* **profile.read**: a gear receives only the declared fields
  (``traits.rfm``, ``traits.*``, ``events``...).
* **profile.write**: every path a patch (or a connector's profile record)
  touches must lie at or below a declared field; writing ``traits`` when
  ``traits.rfm`` is declared is refused.
* **catalog.read**: catalog items reach a gear with their ``id`` and only the
  declared fields (``title``, ``price``, ``attributes.brand``, ``*``).
* **catalog.write**: a connector's item record may carry only declared fields
  besides its ``id``.
* **events.read**: an event's ``properties`` (in ``gear_on_event`` and in a
  profile's ``events``) hold only the declared property names (``*``: all).
* **events.write**: a connector's event record must be of a declared type.
* **secrets**: ``ctx.secrets.get(name)`` answers only for declared names.

Every rule is registered with :func:`enforces` under the key of the
capability it enforces; :data:`gears_sdk.capabilities.CAPABILITIES` is the
one table of capabilities, and a test keeps the two in step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: The event types the engine knows; ``permissions.events.write`` names some of them.
EVENT_TYPES = ("view", "click", "purchase", "custom")
#: The fields of a catalog item; ``permissions.catalog`` names some of them.
CATALOG_FIELDS = frozenset({"id", "title", "category", "price", "url", "image_url",
                            "attributes", "active"})
#: What any declared write includes: the key that says which item or profile it is.
ALWAYS_WRITABLE = frozenset({"id", "user_id"})

F = TypeVar("F", bound=Callable[..., Any])
#: capability key → the functions that enforce it (filled by :func:`enforces`).
ENFORCERS: dict[str, list[Callable[..., Any]]] = {}


def enforces(*keys: str) -> Callable[[F], F]:
    """Register a function as (one of) the enforcement of the capability ``keys``."""

    def mark(fn: F) -> F:
        for key in keys:
            ENFORCERS.setdefault(key, []).append(fn)
        return fn

    return mark


@enforces("network")
def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether ``url`` may be requested by a gear declaring ``patterns``."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    for pattern in patterns:
        pat_host, _, pat_port = pattern.lower().partition(":")
        want_port = int(pat_port) if pat_port else _DEFAULT_PORTS[parts.scheme]
        if port != want_port:
            continue
        if pat_host.startswith("*."):
            if host.endswith(pat_host[1:]) and host != pat_host[2:]:
                return True
        elif host == pat_host:
            return True
    return False


def _segments_match(pattern: list[str], path: list[str]) -> bool:
    return len(path) >= len(pattern) and all(
        p == "*" or p == s for p, s in zip(pattern, path, strict=False)
    )


def field_allowed(path: str, patterns: Iterable[str]) -> bool:
    """Whether the dotted ``path`` lies at or below one of ``patterns``."""
    segs = path.split(".")
    return any(_segments_match(p.split("."), segs) for p in patterns)


_MISSING = object()


def _pick(value: Any, segments: list[str]) -> Any:
    if not segments:
        return copy.deepcopy(value)
    if not isinstance(value, dict):
        return _MISSING
    head, rest = segments[0], segments[1:]
    keys = list(value) if head == "*" else [head] if head in value else []
    out = {}
    for key in keys:
        picked = _pick(value[key], rest)
        if picked is not _MISSING:
            out[key] = picked
    return out if out or head == "*" else _MISSING


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value


def filter_fields(doc: dict[str, Any], read: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``doc`` holding only the dotted fields ``read`` declares."""
    out: dict[str, Any] = {}
    for pattern in read:
        picked = _pick(doc, pattern.split("."))
        if isinstance(picked, dict):
            _merge(out, picked)
    return out


@enforces("profile.read")
def filter_profile(profile: dict[str, Any], read: Iterable[str],
                   event_properties: Iterable[str] | None = None) -> dict[str, Any]:
    """A deep copy of ``profile`` holding only the fields ``read`` declares.

    With ``event_properties`` the events it holds are cut down as well
    (:func:`filter_event`), as the runtime does.
    """
    out = filter_fields(profile, read)
    if event_properties is not None and isinstance(out.get("events"), list):
        props = list(event_properties)
        out["events"] = [filter_event(e, props) for e in out["events"]]
    return out


@enforces("profile.write")
def patch_violations(paths: Iterable[str], write: Iterable[str]) -> list[str]:
    """The paths of a profile patch that ``write`` does not allow."""
    write = list(write)
    return [p for p in paths if not field_allowed(p, write)]


@enforces("catalog.read")
def filter_item(item: Any, read: Iterable[str]) -> Any:
    """A catalog item with its ``id`` and only the fields ``read`` declares."""
    if not isinstance(item, dict):
        return item
    out = filter_fields(item, read)
    if "id" in item:
        out["id"] = item["id"]
    return out


def filter_items(items: Any, read: Iterable[str]) -> Any:
    """:func:`filter_item` over a list (anything else is returned as it is)."""
    if not isinstance(items, list):
        return items
    read = list(read)
    return [filter_item(i, read) for i in items]


@enforces("events.read")
def filter_event(event: Any, properties: Iterable[str]) -> Any:
    """An event whose ``properties`` hold only the declared property names.

    Properties that are not an object (never stored by the engine) become ``{}``
    rather than passing through unfiltered.
    """
    if not isinstance(event, dict) or "properties" not in event:
        return event
    props = event["properties"]
    return {**event, "properties": filter_fields(props, properties)
            if isinstance(props, dict) else {}}


def _profile_argument(permissions: Any, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return filter_profile(value, permissions.profile.read, permissions.events.read)


def _content_argument(permissions: Any, value: Any) -> Any:
    if not (isinstance(value, dict) and isinstance(value.get("items"), list)):
        return value
    return {**value, "items": filter_items(value["items"], permissions.catalog.read)}


#: How a hook argument carrying workspace data is cut down to what the manifest's
#: ``permissions`` declare it reads, by argument name. The runtime applies it to every
#: call and :mod:`gears_sdk.testing` in-process.
ARGUMENT_FILTERS: dict[str, Callable[[Any, Any], Any]] = {
    "profile": _profile_argument,
    "event": lambda permissions, value: filter_event(value, permissions.events.read),
    "items": lambda permissions, value: filter_items(value, permissions.catalog.read),
    "content": _content_argument,
}
#: Hook arguments passed as they are: ``stream`` and ``cursor`` are the gear's own
#: values, ``records`` are built by the engine from the fields the manifest reads
#: (a segment export), ``config`` and ``ctx`` are the installation's own.
UNFILTERED_ARGUMENTS = frozenset({"stream", "cursor", "records", "config", "ctx"})


def filter_arguments(permissions: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a hook call cut down to what ``permissions`` declare it reads.

    ``profile`` keeps the fields of ``profile.read``; event properties (the
    ``event`` argument and the profile's ``events``) the names of
    ``events.read``; catalog items (``items``, and a template content's
    ``items``) their ``id`` and the fields of ``catalog.read``.
    """
    return {name: ARGUMENT_FILTERS[name](permissions, value) if name in ARGUMENT_FILTERS
            else value for name, value in kwargs.items()}


@enforces("secrets")
def secret_allowed(name: str, declared: Iterable[str]) -> bool:
    """Whether ``ctx.secrets.get(name)`` may answer."""
    return name in set(declared)


# -- a connector's records ------------------------------------------------------------------


def _declared(write: Iterable[str]) -> str:
    return ", ".join(write) or "none"


def _object_paths(record: dict[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if isinstance(value, dict):
        return [f"{key}.{k}" for k in value]
    return [key] if key in record else []


#: The keys of a profile record; the engine keeps any other key under ``attributes``.
PROFILE_RECORD_KEYS = frozenset({"user_id", "attributes", "traits"})


def _profile_record(record: dict[str, Any], write: tuple[str, ...]) -> list[tuple[str, str]]:
    if not write:
        return [("", "a profile record writes to profiles, and permissions.profile.write "
                 "declares nothing")]
    paths = [*_object_paths(record, "attributes"), *_object_paths(record, "traits")]
    paths += [f"attributes.{k}" for k in record if k not in PROFILE_RECORD_KEYS]
    return [(p, f"{p} is outside permissions.profile.write (declared: {_declared(write)})")
            for p in patch_violations(paths, write)]


@enforces("catalog.write")
def item_record_paths(record: dict[str, Any]) -> list[str]:
    """The catalog fields an item record writes (``attributes`` key by key).

    A key that is not a catalog field is kept under ``attributes`` by the
    engine, so it counts as ``attributes.<key>``.
    """
    paths: list[str] = []
    for key in record:
        if key in ALWAYS_WRITABLE:
            continue
        if key == "attributes":
            paths += _object_paths(record, key)
        else:
            paths.append(key if key in CATALOG_FIELDS else f"attributes.{key}")
    return paths


def _item_record(record: dict[str, Any], write: tuple[str, ...]) -> list[tuple[str, str]]:
    if not write:
        return [("", "an item record writes to the catalog, and permissions.catalog.write "
                 "declares nothing")]
    return [(p, f"{p} is outside permissions.catalog.write (declared: {_declared(write)})")
            for p in item_record_paths(record) if not field_allowed(p, write)]


@enforces("events.write")
def event_type_allowed(event_type: Any, write: Iterable[str]) -> bool:
    """Whether an event of ``event_type`` may be recorded (``*``: any type)."""
    write = list(write)
    return "*" in write or (isinstance(event_type, str) and event_type in write)


def _event_record(record: dict[str, Any], write: tuple[str, ...]) -> list[tuple[str, str]]:
    etype = record.get("type")
    if event_type_allowed(etype, write):
        return []
    return [("type", f"recording {etype!r} events is outside permissions.events.write "
             f"(declared: {_declared(write)})")]


def record_refusals(permissions: Any, kind: str, record: Any) -> list[tuple[str, str]]:
    """Why a connector may not write ``record`` to a ``kind`` stream: ``(path, reason)``.

    ``path`` is relative to the record (``""``: the record as a whole). An
    empty list means every field it writes is declared; a record that is not
    an object is left to the engine's shape checks.
    """
    if not isinstance(record, dict):
        return []
    if kind == "profiles":
        return _profile_record(record, tuple(permissions.profile.write))
    if kind == "items":
        return _item_record(record, tuple(permissions.catalog.write))
    if kind == "events":
        return _event_record(record, tuple(permissions.events.write))
    return [("", f"unknown stream kind {kind!r}")]
