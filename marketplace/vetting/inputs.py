"""Generated inputs for the dynamic test: configs, profiles, events, items and content
shaped by what the gear declares, so its hooks run their real code paths."""

from __future__ import annotations

import itertools
import secrets as secrets_module
from collections.abc import Callable
from typing import Any

from gears_sdk.hookspecs import HOOKS, spec_arguments
from gears_sdk.manifest import Manifest, secret_fields

SAMPLE_PROFILE: dict[str, Any] = {
    "id": "u-4f1c9a27",
    "attributes": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                   "country": "GB", "locale": "en-GB"},
    "traits": {"sample": 1, "score": 0.5, "segment": "loyal", "lifetime_value": 420.0},
    "events": [
        {"type": "page_view", "timestamp": "2024-05-01T10:00:00Z",
         "properties": {"path": "/products/1"}},
        {"type": "purchase", "timestamp": "2024-05-02T11:00:00Z",
         "properties": {"order_id": "o-1", "value": 49.9, "currency": "EUR"}},
    ],
    "consents": {"marketing": True},
}
SAMPLE_ITEMS: list[dict[str, Any]] = [
    {"id": f"sku-{n}", "title": f"Product {n}", "price": 10.0 * n, "category": "shoes",
     "tags": ["new"] if n % 2 else ["sale"], "in_stock": n != 3} for n in range(1, 6)
]


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    parts = [("sample" if p == "*" else p) for p in path.split(".") if p]
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    if parts and parts[-1] not in target:
        target[parts[-1]] = value


def profile_for(manifest: Manifest) -> dict[str, Any]:
    """A full sample profile plus a value at every declared read path (the runtime
    filters it down to what the gear may read)."""
    profile: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else list(v)
                                   if isinstance(v, list) else v)
                               for k, v in SAMPLE_PROFILE.items()}
    for path in manifest.permissions.profile.read:
        _set_path(profile, path, "sample-value")
    return profile


def events_for(manifest: Manifest) -> list[dict[str, Any]]:
    types = [t for t in manifest.permissions.events.write if t != "*"] or ["view", "purchase"]
    return [{"type": t, "timestamp": "2024-05-03T12:00:00Z", "user_id": "u-4f1c9a27",
             "properties": {"value": 19.5, "path": "/", "order_id": "o-2"}} for t in types[:3]]


def _value(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return config_for(schema)[0]
    fmt = schema.get("format")
    if fmt == "uri":
        return "https://example.com/"
    if fmt == "email":
        return "jordan.lee@example.com"
    return "x" * max(int(schema.get("minLength", 7)), 1)


def config_for(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(config, secrets)``: a value for every property (defaults first); secret fields
    go to ``secrets``, as an installation stores them."""
    secret = set(secret_fields(schema))
    config: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if name in secret:
            secrets[name] = secrets_module.token_urlsafe(24)
        else:
            config[name] = _value(sub)
    return config, secrets


def _content() -> dict[str, Any]:
    return {"title": "Welcome back", "body": "Picked for you", "items": SAMPLE_ITEMS[:3],
            "placement": "home_hero"}


Samples = Callable[[Manifest, list[str]], list[Any]]

#: The values each hook argument takes in the dynamic run, by argument name (a hook is
#: called once per combination); :data:`EMPTY` adds one call with the edge values when
#: all of a hook's arguments have one.
SAMPLES: dict[str, Samples] = {
    "stream": lambda manifest, streams: streams[:2],
    "cursor": lambda manifest, streams: [None],
    "records": lambda manifest, streams: [[dict(SAMPLE_PROFILE["attributes"])]],
    "event": lambda manifest, streams: events_for(manifest),
    "profile": lambda manifest, streams: [profile_for(manifest)],
    "items": lambda manifest, streams: [SAMPLE_ITEMS],
    "content": lambda manifest, streams: [_content()],
}
EMPTY: dict[str, Any] = {"event": {"type": "unknown"}, "profile": {}, "items": [], "content": {}}
#: Lifecycle hooks run first and last; every other hook in the table's order between.
FIRST, LAST = ("gear_install",), ("gear_uninstall",)


def _hook_calls(hook: str, manifest: Manifest, streams: list[str]) -> list[dict[str, Any]]:
    names = [a for a in spec_arguments(hook) if a not in ("config", "ctx")]
    values = [SAMPLES[name](manifest, streams) for name in names]
    calls = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if names and all(name in EMPTY for name in names):
        calls.append({name: EMPTY[name] for name in names})
    return calls


def calls_for(manifest: Manifest, streams: list[str] | None = None
              ) -> list[tuple[str, dict[str, Any]]]:
    """``(hook, kwargs)`` for every declared hook, lifecycle first and last, each hook
    with the spec's arguments drawn from :data:`SAMPLES`."""
    middle = tuple(h for h in HOOKS if h not in FIRST + LAST)
    names = streams or ["default"]
    return [(hook, kwargs) for hook in FIRST + middle + LAST if hook in manifest.hooks
            for kwargs in _hook_calls(hook, manifest, names)]
