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

The run must be indistinguishable from a workspace: the installation gets a
real-looking id and a random, realistic workspace name, and the generated
inputs carry nothing that says "test". It also **counts** what the gear
tried, since a gear may catch every refusal and carry on: the worker's audit
hook (processes, sockets, native code, files outside the gear,
``dynamic_refused``), the ctx requests the host refused (``dynamic_ctx_refused``)
and the patches refused (``dynamic_patch_refused``). ``ctx.http`` answers from
a recorder (:mod:`~marketplace.vetting.checks.recorder`): no request leaves
the host, and each one is reported with its method and host
(``dynamic_http_request``).
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from marketplace.runtime import GearCallError, Installation, Runtime, SandboxError
from marketplace.runtime.loader import GearCache
from marketplace.vetting.checks.recorder import CountingServices, RecordingHttp
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding, rank
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
    with tempfile.TemporaryDirectory(prefix="gears-runtime-") as tmp:
        # traversable (not listable), so the worker's dedicated uid reaches the staged
        # interpreter and gear beneath it exactly as under the engine's runtime
        os.chmod(tmp, 0o711)  # noqa: S103 (traverse only)
        return _run(ctx, Path(tmp))


#: Parts of realistic workspace names (the engine's are chosen by people).
_BRANDS = ("northwind", "blue-harbor", "fernwood", "lumen", "oak-and-ivy", "kestrel",
           "tidewater", "copperleaf", "brightside", "redwood")
_PLACES = ("shop", "store", "web", "eu", "us", "outlet", "online", "retail", "main", "prod")


def workspace_name(rng: random.Random | None = None) -> str:
    """A random workspace name like the ones people give theirs."""
    rng = rng or random.SystemRandom()
    return f"{rng.choice(_BRANDS)}-{rng.choice(_PLACES)}"


def _run(ctx: VetContext, tmp: Path) -> list[Finding]:
    m = ctx.manifest
    gear_dir = GearCache(tmp / "cache").add(ctx.archive.data, name=m.name,
                                            version=str(m.version))
    config, secrets = config_for(m.config_schema)
    served: list[CountingServices] = []

    def services(inst: Installation) -> CountingServices:
        counting = CountingServices(inst, RecordingHttp(inst.manifest.permissions.network))
        served.append(counting)
        return counting

    try:
        runtime = Runtime(level=ctx.sandbox.level, min_level=ctx.sandbox.min_level,
                          root_dir=tmp / "runtime", allow_private_hosts=frozenset(),
                          services_factory=services)
    except SandboxError as exc:
        return [finding("sandbox_unavailable", f"the sandbox cannot start here: {exc.message}")]
    inst = Installation(id=uuid.uuid4().hex, workspace=workspace_name(),
                        gear_dir=gear_dir, manifest=m, config=config, secrets=secrets,
                        data_dir=tmp / "data")
    out: list[Finding] = []
    attempts: Counter[str] = Counter()
    patches = Counter[str]()
    patch_messages: dict[str, str] = {}
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
                if f.code == "dynamic_patch_refused":
                    patches[hook] += 1
                    patch_messages.setdefault(hook, f.message)
                    continue
                if (f.code, hook) not in seen:
                    seen.add((f.code, hook))
                    out.append(f)
            finally:
                attempts.update(_take_attempts(runtime, inst.id))
        level = runtime.level
    out += _counted(attempts, served, patches, patch_messages)
    if not out:
        out.append(finding("sandbox_ok", f"loaded and ran {ran} hook call"
                           f"{'s' if ran != 1 else ''} with generated input in the "
                           f"{level!r} sandbox; nothing was refused"))
    elif not any(rank(f.severity) > rank("info") for f in out):
        out.append(finding("sandbox_ok", f"loaded and ran {ran} hook call"
                           f"{'s' if ran != 1 else ''} in the {level!r} sandbox; nothing was "
                           "refused"))
    return out


def _take_attempts(runtime: Runtime, installation: str) -> dict[str, int]:
    """The attempts the installation's worker reported so far (then cleared)."""
    try:
        worker = runtime.worker(installation)
    except Exception:  # no worker: nothing more was reported
        return {}
    counts, worker.attempts = dict(worker.attempts), {}
    return counts


def _times(counts: Counter[str]) -> str:
    return ", ".join(f"{what} x{n}" for what, n in counts.most_common())


def _counted(attempts: Counter[str], served: list[CountingServices],
             patches: Counter[str], patch_messages: dict[str, str]) -> list[Finding]:
    """The counting findings: what the gear tried, even when it swallowed the refusal."""
    out: list[Finding] = []
    if attempts:
        out.append(finding("dynamic_refused", f"tried {sum(attempts.values())} time(s) what "
                           f"the sandbox refuses: {_times(attempts)}"))
    refused: Counter[str] = Counter()
    http_refused: Counter[str] = Counter()
    requests: Counter[tuple[str, str]] = Counter()
    for services in served:
        refused.update(services.refused)
        http_refused.update(services.recorder.refused)
        requests.update(services.recorder.requests)
    if refused:
        hosts = f"; hosts not declared: {_times(http_refused)}" if http_refused else ""
        out.append(finding("dynamic_ctx_refused", f"the host refused {sum(refused.values())} "
                           f"ctx request(s): {_times(refused)}{hosts}"))
    if patches:
        first = "; ".join(patch_messages.values())
        out.append(finding("dynamic_patch_refused", f"{sum(patches.values())} patch(es) "
                           f"outside the write set were refused ({_times(patches)}): "
                           f"{first}"[:1000]))
    for (method, host), n in sorted(requests.items()):
        out.append(finding("dynamic_http_request", f"ctx.http {method} {host} x{n}, answered "
                           "by the vetting recorder (nothing left the host)"))
    return out


def _call_finding(hook: str, exc: GearCallError) -> Finding:
    return finding(classify(exc), f"{hook}: {exc.message}"[:1000])
