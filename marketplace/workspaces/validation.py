"""Validating an installation's config against its gear's ``config_schema``.

The install form is generated from the schema, and the server holds every
submitted config to the same schema, so a gear never sees a config its author
did not allow. :func:`validate_config` fills in the schema's defaults (also in
nested objects), validates with JSON Schema draft 2020-12 including formats,
and reports **every** problem with its JSON path so a form can mark each field.
Secret values are split from the rest and never echoed back in a message.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from gears_sdk.errors import ProblemDetail
from gears_sdk.manifest import secret_fields
from gears_sdk.patterns import LinearValidator
from gears_sdk.patterns import compile as linear
from gears_sdk.schema_errors import schema_problems
from gears_sdk.values import DEFAULT_LIMITS, ValueRejected, check_value

#: A config larger than this (as JSON) is refused: configs are settings, not data.
MAX_CONFIG_BYTES = 64 * 1024
#: An installation config: 64 KiB, 16 levels, finite numbers, valid Unicode.
CONFIG_LIMITS = DEFAULT_LIMITS.with_(max_bytes=MAX_CONFIG_BYTES, max_depth=16)


# RE2 (linear time, ``$`` only at the very end: "https://x\n" is not a URL).
_URI = linear(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_HOSTNAME = linear(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                   r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@cache
def format_checker() -> FormatChecker:
    """jsonschema's checker plus ``uri`` and ``hostname``, which it checks only when optional
    packages are installed; without them those formats would silently accept anything."""
    checker = copy.deepcopy(Draft202012Validator.FORMAT_CHECKER)
    if "uri" not in checker.checkers:
        checker.checks("uri")(lambda v: not isinstance(v, str) or bool(_URI.match(v)))
    if "hostname" not in checker.checkers:
        checker.checks("hostname")(lambda v: not isinstance(v, str)
                                   or (len(v) <= 253 and bool(_HOSTNAME.match(v))))
    return checker


def config_schema_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's config schema, or the empty object schema when it has none."""
    schema = manifest.get("config_schema")
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}


def apply_defaults(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``value`` with the schema's defaults filled in, at every object level.

    An absent nested object is created when the schema gives it a default or
    when any of its own properties has one, so nested defaults are not lost.
    """
    out = copy.deepcopy(value)
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if key not in out:
            if "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
            elif _has_nested_defaults(prop):
                out[key] = {}
            else:
                continue
        if isinstance(out[key], dict) and isinstance(prop.get("properties"), dict):
            out[key] = apply_defaults(prop, out[key])
    return out


def _has_nested_defaults(prop: dict[str, Any]) -> bool:
    props = prop.get("properties")
    if not isinstance(props, dict):
        return False
    return any(isinstance(p, dict) and ("default" in p or _has_nested_defaults(p))
               for p in props.values())


def validate_config(manifest: dict[str, Any], config: Any
                    ) -> tuple[dict[str, Any], dict[str, Any], list[ProblemDetail]]:
    """Check ``config`` against ``manifest``'s config schema.

    Returns ``(clean_config, secrets, problems)``: the config with defaults
    applied minus its secret fields, the secret fields' values, and every
    problem as ``{"path": "$.field.sub", "message", "code"}``. The values are
    meaningful only when ``problems`` is empty.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return {}, {}, [{"path": "$", "message": "the config must be a JSON object",
                         "code": "schema.type"}]
    try:  # the one contract for values crossing a trust boundary, before any schema work
        check_value(config, CONFIG_LIMITS)
    except ValueRejected as exc:
        return {}, {}, [{"path": exc.path, "message": exc.message, "code": exc.code}]
    schema = config_schema_of(manifest)
    secret_names = set(secret_fields(schema))
    full = apply_defaults(schema, config)
    validator = LinearValidator(schema, format_checker=format_checker())
    problems = [p.to_dict() for p in schema_problems(validator, full, secret=secret_names)]
    secrets = {k: full.pop(k) for k in sorted(secret_names) if k in full}
    return full, secrets, problems
