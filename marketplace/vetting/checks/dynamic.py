"""The dynamic test: load the gear in the production sandbox and call its hooks.

The archive is unpacked through the runtime's own cache (the SDK's safe
reader, read-only files) into a temporary directory, then started by a
:class:`marketplace.runtime.Runtime` at the host's sandbox level and the
configured minimum — exactly what an engine would do — and every declared
hook is called with generated inputs (:mod:`marketplace.vetting.inputs`).
The worker gets every protection an installed gear gets (dedicated uid,
seccomp, Landlock, rlimits, namespaces at ``strict``): a bare upload is
hostile code, and this run happens before any human review.
What the sandbox refused or what went wrong becomes a finding; a clean run
is one ``sandbox_ok``.

When the sandbox cannot start on this host, the step reports
``sandbox_unavailable`` (``high``), so the version can neither be
auto-approved nor look as if it had been tested.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from marketplace.runtime import GearCallError, Installation, Runtime, SandboxError
from marketplace.runtime.loader import GearCache
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding
from marketplace.vetting.inputs import calls_for, config_for

#: GearCallError code → finding code.
CALL_CODES = {
    "load_failed": "dynamic_load_failed",
    "timeout": "dynamic_timeout",
    "crashed": "dynamic_crash",
    "protocol": "dynamic_crash",
    "patch_refused": "dynamic_patch_refused",
    "invalid_result": "dynamic_invalid_result",
    "too_large": "dynamic_invalid_result",
}
PERMISSION_ERRORS = frozenset({"PermissionError", "BlockingIOError"})
PERMISSION_WORDS = ("Operation not permitted", "Permission denied", "[Errno 1]", "[Errno 13]",
                    "not allowed", "refused")


def classify(exc: GearCallError) -> str:
    """The finding code for a failed call."""
    if exc.code == "gear_error":
        if exc.error_type in PERMISSION_ERRORS or any(w in exc.message
                                                      for w in PERMISSION_WORDS):
            return "dynamic_permission_denied"
        return "dynamic_hook_error"
    return CALL_CODES.get(exc.code or "", "dynamic_hook_error")


def _stream_names(value: Any) -> list[str]:
    names: list[str] = []
    for s in value or []:
        name = getattr(s, "name", None) or (s.get("name") if isinstance(s, dict) else None)
        if isinstance(name, str):
            names.append(name)
    return names


def check_dynamic(ctx: VetContext) -> Iterable[Finding]:
    if not ctx.sandbox.enabled:
        return [finding("sandbox_unavailable", "the dynamic test is turned off on this "
                        "registry (VETTING_SANDBOX=0); the gear was not run")]
    with tempfile.TemporaryDirectory(prefix="gears-vet-") as tmp:
        # traversable (not listable), so the worker's dedicated uid reaches the staged
        # interpreter and gear beneath it exactly as under the engine's runtime
        os.chmod(tmp, 0o711)  # noqa: S103 (traverse only)
        return _run(ctx, Path(tmp))


def _run(ctx: VetContext, tmp: Path) -> list[Finding]:
    m = ctx.manifest
    gear_dir = GearCache(tmp / "cache").add(ctx.archive.data, name=m.name,
                                            version=str(m.version))
    config, secrets = config_for(m.config_schema)
    try:
        runtime = Runtime(level=ctx.sandbox.level, min_level=ctx.sandbox.min_level,
                          root_dir=tmp / "runtime")
    except SandboxError as exc:
        return [finding("sandbox_unavailable", f"the sandbox cannot start here: {exc.message}")]
    inst = Installation(id=f"vet-{ctx.archive.sha256[:12]}", workspace="vetting",
                        gear_dir=gear_dir, manifest=m, config=config, secrets=secrets,
                        data_dir=tmp / "data")
    out: list[Finding] = []
    ran = 0
    with runtime:
        try:
            runtime.start(inst)
        except SandboxError as exc:
            return [finding("sandbox_unavailable", f"the sandbox refused to start the gear: "
                            f"{exc.message}")]
        except GearCallError as exc:
            return [finding(classify(exc), f"the gear did not start: {exc.message}")]
        streams: list[str] | None = None
        if "gear_streams" in m.hooks:
            try:
                streams = _stream_names(runtime.call(inst.id, "gear_streams"))
                ran += 1
            except GearCallError as exc:
                out.append(_call_finding("gear_streams", exc))
        seen: set[tuple[str, str]] = set()
        for hook, kwargs in calls_for(m, streams)[: ctx.sandbox.max_calls]:
            if hook == "gear_streams":
                continue
            try:
                runtime.call(inst.id, hook, **kwargs)
                ran += 1
            except GearCallError as exc:
                if exc.code in ("disabled", "backoff", "not_running"):
                    break
                f = _call_finding(hook, exc)
                if (f.code, hook) not in seen:
                    seen.add((f.code, hook))
                    out.append(f)
        level = runtime.level
    if not out:
        out.append(finding("sandbox_ok", f"loaded and ran {ran} hook call"
                           f"{'s' if ran != 1 else ''} with generated input in the "
                           f"{level!r} sandbox; nothing was refused"))
    return out


def _call_finding(hook: str, exc: GearCallError) -> Finding:
    return finding(classify(exc), f"{hook}: {exc.message}"[:1000])
