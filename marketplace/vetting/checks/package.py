"""Checks of the package as a whole: archive summary, README and license,
the config schema, and capability growth against the last approved version."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from gears_sdk.capabilities import capability_ids
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding

LICENSE_FILES = ("LICENSE", "LICENCE", "COPYING")


def check_archive(ctx: VetContext) -> Iterable[Finding]:
    """The upload path already refused unsafe archives and invalid manifests (the SDK's
    reader); this records that it passed, with what it read, for the reviewer."""
    a, m = ctx.archive, ctx.manifest
    py = len(ctx.python_files())
    return [finding("archive_ok", f"archive safety checks and manifest validation passed: "
                    f"{len(a.names)} files ({py} Python), {a.size} bytes, sha256 "
                    f"{a.sha256[:12]}…; {m.kind} declaring {', '.join(m.hooks)}")]


def check_readme_license(ctx: VetContext) -> Iterable[Finding]:
    out: list[Finding] = []
    readme = ctx.archive.readme()
    if readme is None or not readme.strip():
        out.append(finding("readme_missing", f"the README ({ctx.manifest.readme}) is missing "
                           "or empty: the catalog page is built from it",
                           file=ctx.manifest.readme))
    has_file = any(n.rsplit("/", 1)[-1].upper().startswith(LICENSE_FILES)
                   for n in ctx.archive.names)
    if not ctx.manifest.license and not has_file:
        out.append(finding("license_missing", "no 'license' in gear.json and no LICENSE "
                           "file: users cannot tell on what terms they may use it",
                           file="gear.json"))
    return out


def check_config_schema(ctx: VetContext) -> Iterable[Finding]:
    """The schema must be valid, describe an object, and accept its own defaults: the
    install form is generated from it and every saved config is validated against it."""
    schema: Any = ctx.manifest.config_schema
    where = "gear.json"
    if not isinstance(schema, dict):
        return [finding("config_schema_invalid", "config_schema is not an object", file=where)]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [finding("config_schema_invalid", f"config_schema is not a valid JSON Schema: "
                        f"{exc.message}", file=where)]
    out: list[Finding] = []
    if schema.get("type", "object") != "object":
        out.append(finding("config_schema_invalid", "config_schema must describe an object "
                           f"(its type is {schema.get('type')!r})", file=where))
    validator = Draft202012Validator(schema)
    for prop, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and "default" in sub:
            errors = list(Draft202012Validator(sub).iter_errors(sub["default"]))
            if errors:
                out.append(finding("config_schema_invalid", f"the default of {prop!r} does "
                                   f"not match its own schema: {errors[0].message}", file=where))
    defaults = {k: v["default"] for k, v in (schema.get("properties") or {}).items()
                if isinstance(v, dict) and "default" in v}
    if not out and not validator.is_valid(defaults) and not schema.get("required"):
        out.append(finding("config_schema_invalid", "a config of only the defaults is not "
                           "valid against the schema", file=where))
    return out


def capabilities(manifest: dict[str, Any] | None) -> set[str]:
    if manifest is None:
        return set()
    return set(capability_ids(manifest))


def check_capabilities(ctx: VetContext) -> Iterable[Finding]:
    now = set(capability_ids(ctx.manifest))
    if ctx.previous_manifest is None:
        listed = ", ".join(sorted(now)) or "none"
        return [finding("capabilities_initial", f"no approved version to compare with; "
                        f"capabilities asked for: {listed}", file="gear.json")]
    before = capabilities(ctx.previous_manifest)
    out: list[Finding] = []
    added, removed = sorted(now - before), sorted(before - now)
    if added:
        out.append(finding("capabilities_added", f"new since {ctx.previous_version}: "
                           f"{', '.join(added)}", file="gear.json"))
    if removed:
        out.append(finding("capabilities_removed", f"dropped since {ctx.previous_version}: "
                           f"{', '.join(removed)}", file="gear.json"))
    return out
