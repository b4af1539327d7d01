"""Load and validate ``gear.json``.

:func:`validate_manifest` returns **every** problem, each with its JSON path
(``$.permissions.network[0]``) and a sentence a person understands;
:func:`load_manifest` turns a valid manifest into a typed :class:`Manifest`
or raises :class:`~gears_sdk.errors.ManifestError` with all of them.

Validation has two layers: the JSON Schema shipped in
``gears_sdk/schema/gear.schema.json`` (draft 2020-12) for shape, then checks
the schema cannot express: strict semver, parseable ranges, hooks that fit the
kind, and a ``config_schema`` that is itself a valid JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from gears_sdk.errors import ManifestError, Problem
from gears_sdk.hookspecs import kind_problems
from gears_sdk.patterns import LinearValidator, PatternError
from gears_sdk.patterns import compile as compile_pattern
from gears_sdk.schema_errors import TYPE_NAMES, json_path, schema_problems, sentence, short
from gears_sdk.versions import Range, RangeError, Version, parse_range, parse_version

MANIFEST_NAME = "gear.json"
#: A manifest larger than this is refused before it is parsed.
MAX_MANIFEST_BYTES = 64 * 1024
#: Nesting deeper than this (in config_schema, say) is refused.
MAX_MANIFEST_DEPTH = 32

DEFAULT_LIMITS = {"memory_mb": 128, "timeout_ms": 1000, "state_kb": 256}
SECRET_FORMATS = frozenset({"secret", "password"})


@cache
def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, as shipped with the SDK."""
    text = resources.files("gears_sdk").joinpath("schema/gear.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


#: Draft 2020-12 with ``pattern`` run by RE2: linear time, and ``$`` only at the very end as
#: JSON Schema means it (Python's ``$`` also matches before a final newline, which would let
#: ``"acme/hello\n"`` pass as a look-alike of ``acme/hello``).
ManifestValidator = LinearValidator


@cache
def _validator() -> Any:
    return ManifestValidator(manifest_schema())


@dataclass(frozen=True)
class Access:
    """What a gear may read and write of one kind of data."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    @classmethod
    def from_value(cls, value: Any) -> Access:
        """``{"read": [...], "write": [...]}``, or the older list form ``["read", "write"]``,
        which grants every field (``*``) for each word it holds."""
        if isinstance(value, list):
            return cls(read=("*",) if "read" in value else (),
                       write=("*",) if "write" in value else ())
        value = value or {}
        return cls(read=tuple(value.get("read") or ()), write=tuple(value.get("write") or ()))


#: The profile's access (kept for the name older code imports).
ProfileAccess = Access


@dataclass(frozen=True)
class Permissions:
    """What the runtime lets the gear do; everything else is refused.

    :data:`gears_sdk.capabilities.CAPABILITIES` says what each field grants
    (:func:`gears_sdk.capabilities.capability_ids` lists them).
    """

    network: tuple[str, ...] = ()
    profile: Access = field(default_factory=Access)
    catalog: Access = field(default_factory=Access)
    events: Access = field(default_factory=Access)
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Permissions:
        return cls(
            network=tuple(data.get("network") or ()),
            profile=Access.from_value(data.get("profile")),
            catalog=Access.from_value(data.get("catalog")),
            events=Access.from_value(data.get("events")),
            secrets=tuple(data.get("secrets") or ()),
        )


@dataclass(frozen=True)
class Manifest:
    """A validated ``gear.json``. ``raw`` keeps the document as written."""

    name: str
    version: Version
    kind: str
    title: str
    summary: str
    entrypoint: str
    hooks: tuple[str, ...]
    engine: Range
    requires: dict[str, Range]
    permissions: Permissions
    limits: dict[str, int]
    config_schema: dict[str, Any]
    categories: tuple[str, ...]
    license: str | None
    readme: str
    raw: dict[str, Any]

    @property
    def publisher(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def archive_name(self) -> str:
        """``<publisher>-<name>-<version>.gear``."""
        return f"{self.publisher}-{self.short_name}-{self.version}.gear"

    def secret_fields(self) -> list[str]:
        """Top-level config properties marked as secrets (write-only)."""
        return secret_fields(self.config_schema)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


def secret_fields(config_schema: dict[str, Any]) -> list[str]:
    """Names of the ``config_schema`` properties with ``"format": "secret"``."""
    props = config_schema.get("properties") or {}
    return sorted(
        k for k, v in props.items() if isinstance(v, dict) and v.get("format") in SECRET_FORMATS
    )


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value``, stopping early past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        cur, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
    return deepest


def validate_manifest(data: Any) -> list[Problem]:
    """Every problem with a manifest document (already parsed from JSON)."""
    if not isinstance(data, dict):
        return [Problem("$", f"the manifest must be a JSON object, not {TYPE_NAMES[_type_of(data)]}")]
    if _depth(data, MAX_MANIFEST_DEPTH) > MAX_MANIFEST_DEPTH:
        return [Problem("$", f"the manifest is nested more than {MAX_MANIFEST_DEPTH} levels deep")]
    problems = schema_problems(_validator(), data)
    bad_paths = {p.path for p in problems}

    def add(path: str, message: str, code: str) -> None:
        if path not in bad_paths:
            problems.append(Problem(path, message, code=code))

    version = data.get("version")
    if isinstance(version, str):
        try:
            parse_version(version)
        except RangeError:
            add("$.version", f"{short(version)} is not a strict semantic version "
                "(MAJOR.MINOR.PATCH, e.g. 1.2.0)", "version")
    for path, text in _ranges(data):
        try:
            parse_range(text)
        except RangeError as exc:
            add(path, f"{exc.message}", "range")
    kind, hooks = data.get("kind"), data.get("hooks")
    if isinstance(kind, str) and isinstance(hooks, list) and all(isinstance(h, str) for h in hooks):
        for sentence in kind_problems(kind, hooks):
            add("$.hooks", sentence, "hooks")
    name, requires = data.get("name"), data.get("requires")
    if isinstance(name, str) and isinstance(requires, dict) and name in requires:
        add(json_path(["requires", name]), "a gear cannot require itself", "requires")
    cs = data.get("config_schema")
    if isinstance(cs, dict):
        problems += _config_schema_problems(cs)
    return problems


def _ranges(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    if isinstance(data.get("engine"), str):
        out.append(("$.engine", data["engine"]))
    requires = data.get("requires")
    if isinstance(requires, dict):
        out += [(json_path(["requires", k]), v) for k, v in requires.items() if isinstance(v, str)]
    return out


def _pattern_problems(cs: dict[str, Any]) -> list[Problem]:
    """Patterns the registry cannot match in linear time (backreferences, lookaround)."""
    problems: list[Problem] = []
    stack: list[tuple[Any, list[Any]]] = [(cs, ["config_schema"])]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((child, [*where, i]) for i, child in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        found = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            found += [("patternProperties", p) for p in node["patternProperties"]]
        for keyword, pattern in found:
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                problems.append(Problem(json_path([*where, keyword]), str(exc), "config_schema"))
        stack.extend((child, [*where, key]) for key, child in node.items())
    return problems


def _config_schema_problems(cs: dict[str, Any]) -> list[Problem]:
    try:
        Draft202012Validator.check_schema(cs)
    except jsonschema.SchemaError as err:
        path = json_path(["config_schema", *err.absolute_path])
        return [Problem(path, f"is not a valid JSON Schema: {err.message}", "config_schema")]
    if cs.get("type") != "object":
        return [Problem("$.config_schema.type", "the config schema's root must be "
                        '"type": "object" (the install form is built from its properties)',
                        "config_schema")]
    problems = _pattern_problems(cs)
    if problems:
        return problems
    for key, prop in (cs.get("properties") or {}).items():
        if isinstance(prop, dict) and "default" in prop:
            errs = list(LinearValidator(prop).iter_errors(prop["default"]))
            if errs:
                problems.append(Problem(json_path(["config_schema", "properties", key, "default"]),
                                        f"the default does not fit its own schema: {sentence(errs[0])}",
                                        "config_schema"))
    return problems


def parse_manifest_bytes(raw: bytes, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """Decode manifest bytes into a JSON object, raising ``ManifestError``."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError([Problem("$", f"the manifest is {len(raw)} bytes; "
                                     f"at most {MAX_MANIFEST_BYTES} are allowed", "too_large")], source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError([Problem("$", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                     "encoding")], source) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except DuplicateKeyError as exc:
        raise ManifestError([Problem("$", f"not valid JSON: {exc}; each key may appear once "
                                     "(readers disagree on which duplicate wins)",
                                     "duplicate_key")], source) from None
    except json.JSONDecodeError as exc:
        raise ManifestError([Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                     f"column {exc.colno}", "json")], source) from None
    except (ValueError, RecursionError) as exc:
        raise ManifestError([Problem("$", f"not valid JSON: {exc}", "json")], source) from None
    return data  # type: ignore[no-any-return,unused-ignore]


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key!r} appears more than once in one object")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def load_manifest(source: dict[str, Any] | bytes | str | Path) -> Manifest:
    """Validate and type a manifest from a dict, bytes, or a path to a file or gear directory."""
    label = MANIFEST_NAME
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / MANIFEST_NAME
        label = str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ManifestError([Problem("$", f"{path} does not exist", "missing")], label) from None
        source = raw
    data = parse_manifest_bytes(source, label) if isinstance(source, bytes) else source
    problems = validate_manifest(data)
    if problems:
        raise ManifestError(problems, label)
    return manifest_from_dict(data)


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Type an already validated manifest document."""
    return Manifest(
        name=data["name"],
        version=parse_version(data["version"]),
        kind=data["kind"],
        title=data["title"],
        summary=data["summary"],
        entrypoint=data["entrypoint"],
        hooks=tuple(data["hooks"]),
        engine=parse_range(data["engine"]),
        requires={k: parse_range(v) for k, v in (data.get("requires") or {}).items()},
        permissions=Permissions.from_dict(data.get("permissions") or {}),
        limits={**DEFAULT_LIMITS, **(data.get("limits") or {})},
        config_schema=data.get("config_schema") or {"type": "object", "properties": {}},
        categories=tuple(data.get("categories") or ()),
        license=data.get("license"),
        readme=data.get("readme") or "README.md",
        raw=data,
    )
