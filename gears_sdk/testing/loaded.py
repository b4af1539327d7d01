"""Load a gear directory in-process and call its hooks the way the engine would.

:class:`LoadedGear` applies the runtime's rules around every call, so tests
catch what production would refuse: config is the manifest's defaults merged
with the test's values and validated against ``config_schema``; secret fields
move to ``ctx.secrets``; the gear sees only the profile fields it declares it
reads (catalog items their declared fields, events their declared
properties); a patch touching an undeclared field is refused, and so are
connector records writing what the manifest does not declare; and arguments and
results must survive a JSON round trip, as they do across the sandbox.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from jsonschema import Draft202012Validator, FormatChecker

from gears_sdk.errors import GearsError, HookError
from gears_sdk.gear_dir import check_gear_dir
from gears_sdk.hookspecs import HOOKS, LIFECYCLE_HOOKS, get_plugin_manager, spec_arguments
from gears_sdk.manifest import Manifest
from gears_sdk.permissions import (
    filter_arguments,
    filter_event,
    filter_items,
    filter_profile,
    patch_violations,
    record_refusals,
)
from gears_sdk.schema_errors import schema_problems
from gears_sdk.testing.fakes import FakeContext, _json_copy
from gears_sdk.types import (
    CheckResult,
    ItemScore,
    ProfilePatch,
    RecordBatch,
    RenderResult,
    StreamInfo,
    WriteResult,
)


def make_profile(user_id: str = "u1", attributes: dict[str, Any] | None = None,
                 traits: dict[str, Any] | None = None,
                 events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A profile as the engine hands it to gears (before permission filtering)."""
    return {"id": user_id, "attributes": dict(attributes or {}), "traits": dict(traits or {}),
            "events": list(events or []), "segments": []}


def make_event(type: str = "view", user_id: str = "u1", *, timestamp: str | None = None,
               **props: Any) -> dict[str, Any]:
    """An event as the engine stores it; ``props`` become its ``properties``."""
    ts = timestamp or datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"id": uuid.uuid4().hex, "type": type, "user_id": user_id, "timestamp": ts,
            "properties": props}


def config_defaults(manifest: Manifest) -> dict[str, Any]:
    """The ``default`` of every top-level property of the config schema."""
    props = manifest.config_schema.get("properties") or {}
    return {k: v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v}


class LoadedGear:
    """A gear loaded from its directory, with one method per hook, named after it
    without the ``gear_`` prefix (``gear_on_event`` → :meth:`on_event`).

    The methods written below add what a hook's docstring promises beyond the
    table (``None`` meaning success, records checked against the stream's kind...);
    every other hook in :data:`~gears_sdk.hookspecs.HOOKS` gets one from
    :func:`hook_method`.
    """

    def __init__(self, path: Path, manifest: Manifest, module: ModuleType,
                 ctx: FakeContext | None = None):
        self.path = path
        self.manifest = manifest
        self.module = module
        self.ctx = ctx or FakeContext.for_manifest(manifest)
        self.pm: pluggy.PluginManager = get_plugin_manager(module)

    def __repr__(self) -> str:
        return f"<LoadedGear {self.manifest.name} {self.manifest.version} from {self.path}>"

    # -- plumbing ---------------------------------------------------------

    def config(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults merged with ``config``, validated against ``config_schema``."""
        merged = {**config_defaults(self.manifest), **(config or {})}
        validator = Draft202012Validator(self.manifest.config_schema,
                                         format_checker=FormatChecker())
        problems = schema_problems(validator, merged, secret=self.manifest.secret_fields())
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise GearsError(f"the config does not fit the gear's config_schema:\n{lines}",
                             code="invalid_config")
        return merged

    def _split_secrets(self, config: dict[str, Any], ctx: FakeContext) -> dict[str, Any]:
        secret = set(self.manifest.secret_fields())
        for key in secret & set(config):
            ctx.secrets.values[key] = config[key]
        return {k: v for k, v in config.items() if k not in secret}

    def call(self, hook: str, *, config: dict[str, Any] | None = None,
             ctx: FakeContext | None = None, **kwargs: Any) -> Any:
        """Call ``hook`` with JSON-copied arguments; return its raw result (or ``None``)."""
        if hook not in self.manifest.hooks:
            raise HookError(f"{self.manifest.name} does not declare {hook} "
                            f"(it declares {', '.join(self.manifest.hooks)})", code="hook_missing")
        ctx = ctx or self.ctx
        args = {k: _json_copy(v, f"the {k!r} argument") for k, v in kwargs.items()}
        args["config"] = self._split_secrets(self.config(config), ctx)
        results = getattr(self.pm.hook, hook)(**args, ctx=ctx)
        result: Any = results[0] if results else None
        wire = result.to_dict() if hasattr(result, "to_dict") else result
        if isinstance(wire, list):
            wire = [r.to_dict() if hasattr(r, "to_dict") else r for r in wire]
        try:
            json.dumps(wire, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise HookError(f"{hook} returned a value that is not JSON-serializable: {exc}",
                            code="result_not_json") from None
        return result

    def _profile(self, profile: dict[str, Any] | None) -> dict[str, Any]:
        perms = self.manifest.permissions
        return filter_profile(profile if profile is not None else make_profile(),
                              perms.profile.read, perms.events.read)

    def _normalize(self, hook: str, value: Any) -> Any:
        """``value`` typed as :data:`~gears_sdk.hookspecs.HOOKS` says ``hook`` returns."""
        spec = HOOKS[hook]
        cls: Any = spec.result
        if cls is None or value is None:
            return None
        try:
            if not spec.many:
                return self._check_patch(hook, cls.from_value(value))
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return [cls.from_value(v) for v in value]
        except TypeError as exc:
            raise HookError(f"{hook} returned an invalid {cls.__name__}: {exc}",
                            code="invalid_result") from None

    def _check_patch(self, hook: str, value: Any) -> Any:
        """A profile patch touching what ``permissions.profile.write`` does not declare is
        refused whole, as the runtime refuses it."""
        if not isinstance(value, ProfilePatch):
            return value
        write = self.manifest.permissions.profile.write
        bad = patch_violations(value.paths(), write)
        if bad:
            raise HookError(
                f"{hook} returned a patch touching {', '.join(bad)}, which gear.json "
                f"does not declare under permissions.profile.write "
                f"(declared: {', '.join(write) or 'none'}); "
                "the runtime refuses the whole patch",
                code="patch_refused")
        return value

    def call_hook(self, hook: str, *, config: dict[str, Any] | None = None,
                  ctx: FakeContext | None = None, **kwargs: Any) -> Any:
        """Call ``hook`` the way the runtime does, from the table alone: arguments cut
        down to what the manifest reads (:data:`gears_sdk.permissions.ARGUMENT_FILTERS`),
        the result typed as :data:`~gears_sdk.hookspecs.HOOKS` says (a profile patch
        held to ``permissions.profile.write``). A lifecycle hook the gear does not
        declare is not called, as in the engine."""
        if hook in LIFECYCLE_HOOKS and hook not in self.manifest.hooks:
            return None
        kwargs = filter_arguments(self.manifest.permissions, kwargs)
        return self._normalize(hook, self.call(hook, config=config, ctx=ctx, **kwargs))

    # -- extension --------------------------------------------------------

    def on_event(self, event: dict[str, Any], profile: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None,
                 ctx: FakeContext | None = None) -> ProfilePatch | None:
        """Call ``gear_on_event``; refuse a patch outside ``permissions.profile.write``."""
        event = filter_event(event, self.manifest.permissions.events.read)
        raw = self.call("gear_on_event", event=event, profile=self._profile(profile),
                        config=config, ctx=ctx)
        patch: ProfilePatch | None = self._normalize("gear_on_event", raw)
        return patch

    def score_items(self, profile: dict[str, Any] | None, items: list[dict[str, Any]],
                    config: dict[str, Any] | None = None,
                    ctx: FakeContext | None = None) -> list[ItemScore] | None:
        """Call ``gear_score_items`` with ``items`` cut down to their ``id`` and the declared
        ``permissions.catalog.read`` fields; ``None`` means "no opinion"."""
        items = filter_items(items, self.manifest.permissions.catalog.read)
        raw = self.call("gear_score_items", profile=self._profile(profile), items=items,
                        config=config, ctx=ctx)
        if raw is None:
            return None
        result: list[ItemScore] = self._normalize("gear_score_items", raw)
        return result

    # -- template ---------------------------------------------------------

    def render(self, profile: dict[str, Any] | None = None, content: dict[str, Any] | None = None,
               config: dict[str, Any] | None = None,
               ctx: FakeContext | None = None) -> RenderResult | None:
        """Call ``gear_render`` with the profile (and the content's catalog ``items``)
        filtered to what the gear may read."""
        content = dict(content or {})
        if isinstance(content.get("items"), list):
            content["items"] = filter_items(content["items"], self.manifest.permissions.catalog.read)
        raw = self.call("gear_render", profile=self._profile(profile), content=content,
                        config=config, ctx=ctx)
        result: RenderResult | None = self._normalize("gear_render", raw)
        return result

    # -- connector --------------------------------------------------------

    def check(self, config: dict[str, Any] | None = None,
              ctx: FakeContext | None = None) -> CheckResult:
        """Call ``gear_check``; ``None`` counts as success."""
        raw = self.call("gear_check", config=config, ctx=ctx)
        result: CheckResult | None = self._normalize("gear_check", raw)
        return result if result is not None else CheckResult(ok=True)

    def streams(self, config: dict[str, Any] | None = None,
                ctx: FakeContext | None = None) -> list[StreamInfo]:
        """Call ``gear_streams``."""
        raw = self.call("gear_streams", config=config, ctx=ctx) or []
        streams: list[StreamInfo] = self._normalize("gear_streams", raw)
        return streams

    def read(self, stream: str, cursor: Any = None, config: dict[str, Any] | None = None,
             ctx: FakeContext | None = None, *, kind: str | None = None) -> RecordBatch:
        """Call ``gear_read``; ``None`` is an empty batch with the cursor unchanged.

        Records the engine would refuse for the stream's ``kind`` (looked up
        with ``gear_streams`` unless given) because they write what the
        manifest does not declare raise :class:`HookError` ``record_refused``.
        """
        raw = self.call("gear_read", stream=stream, cursor=cursor, config=config, ctx=ctx)
        batch: RecordBatch | None = self._normalize("gear_read", raw)
        if batch is None:
            return RecordBatch(cursor=cursor)
        if kind is None:
            kind = next((s.kind for s in self.streams(config, ctx) if s.name == stream), None)
        if kind is not None:
            self._check_records(kind, batch.records)
        return batch

    def _check_records(self, kind: str, records: list[Any]) -> None:
        refused = [f"$.records[{i}]{'.' + path if path else ''}: {why}"
                   for i, rec in enumerate(records)
                   for path, why in record_refusals(self.manifest.permissions, kind, rec)]
        if refused:
            lines = "\n".join(f"  - {r}" for r in refused[:20])
            raise HookError(f"gear_read returned records the engine refuses (each is skipped "
                            f"whole and listed in the sync run):\n{lines}", code="record_refused")

    def write(self, stream: str, records: list[dict[str, Any]],
              config: dict[str, Any] | None = None,
              ctx: FakeContext | None = None) -> WriteResult:
        """Call ``gear_write``; ``None`` means every record was written."""
        raw = self.call("gear_write", stream=stream, records=records, config=config, ctx=ctx)
        result: WriteResult | None = self._normalize("gear_write", raw)
        return result if result is not None else WriteResult(written=len(records))

    # -- lifecycle --------------------------------------------------------

    def install(self, config: dict[str, Any] | None = None, ctx: FakeContext | None = None) -> None:
        """Call ``gear_install`` if the gear declares it (a no-op otherwise, like the engine)."""
        if "gear_install" in self.manifest.hooks:
            self.call("gear_install", config=config, ctx=ctx)

    def uninstall(self, config: dict[str, Any] | None = None,
                  ctx: FakeContext | None = None) -> None:
        """Call ``gear_uninstall`` if the gear declares it."""
        if "gear_uninstall" in self.manifest.hooks:
            self.call("gear_uninstall", config=config, ctx=ctx)


def hook_method(hook: str) -> Callable[..., Any]:
    """The :class:`LoadedGear` method for ``hook``: its spec's arguments (positional or
    by name, ``config`` and ``ctx`` by name) passed to :meth:`LoadedGear.call_hook`."""
    names = tuple(a for a in spec_arguments(hook) if a not in ("config", "ctx"))
    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.Signature(
        [inspect.Parameter("self", positional)]
        + [inspect.Parameter(n, positional) for n in names]
        + [inspect.Parameter(n, keyword, default=None) for n in ("config", "ctx")])

    def method(self: LoadedGear, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        return self.call_hook(hook, **values)

    method.__name__ = method.__qualname__ = hook.removeprefix("gear_")
    method.__doc__ = f"Call ``{hook}`` (:meth:`LoadedGear.call_hook`)."
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


for _hook in HOOKS:
    if not hasattr(LoadedGear, _hook.removeprefix("gear_")):
        setattr(LoadedGear, _hook.removeprefix("gear_"), hook_method(_hook))


def load_gear(path: str | Path, *, secrets: dict[str, str] | None = None) -> LoadedGear:
    """Load the gear in directory ``path`` (or whose ``gear.json`` is ``path``).

    Validates the manifest and the hooks exactly like ``gears validate``.
    """
    path = Path(path)
    if path.name == "gear.json":
        path = path.parent
    manifest, module = check_gear_dir(path)
    return LoadedGear(path.resolve(), manifest, module,
                      FakeContext.for_manifest(manifest, secrets))
