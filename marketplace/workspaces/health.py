"""What an installation is doing, in one place: its explicit state and its numbers.

:func:`installation_health` is the one reader the installations API, the
workspace dashboard and the installation page all use. It computes the state
from the installation's row (enabled, status, reason), its version's row
(quarantined, the ``engine`` range it declares), the engine's version and the
shared ``installation_health`` row every engine process adds to (see
:class:`~marketplace.workspaces.models.InstallationHealth`), so every web process
shows the same thing.

States, first match wins:

==================== ======================================================= ===================
state                when                                                    next action
==================== ======================================================= ===================
quarantined          the installed version is quarantined                    upgrade / contact
incompatible         suspended for the engine's version, or the version's    upgrade / contact
                     ``engine`` range excludes this engine
disabled             a user turned it off                                    enable
tampered             its last start found the engine's copy modified         retry
stopped_by_breaker   the circuit breaker stopped it after repeated failures  retry
failed_to_start      its last start failed (sandbox, load, download ...)     retry
running              it started or answered calls                            none
waiting              enabled, no worker started and no call yet              none
==================== ======================================================= ===================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.models import GearVersion
from marketplace.runtime.health import histogram_percentile
from marketplace.settings import engine_version as current_engine_version
from marketplace.workspaces.models import Installation, InstallationHealth, InstallationStatus
from marketplace.workspaces.planning import engine_mismatch, runs_on

STATES = ("running", "waiting", "disabled", "stopped_by_breaker", "quarantined", "tampered",
          "incompatible", "failed_to_start")
#: What the business user can do next (``next_action``), for buttons and the API.
ACTIONS = ("none", "enable", "retry", "upgrade", "contact_publisher")

#: Start failures that mean the engine's copy of the gear is not what the registry signed.
TAMPER_CODES = frozenset({"tampered", "sha256_mismatch", "manifest_mismatch", "bad_signature",
                          "invalid_digest"})
#: Start failures whose cause the state already shows from the rows (or has gone since).
_SHOWN_ELSEWHERE = frozenset({"quarantined", "disabled", "not_installed", "suspended",
                              "engine_incompatible"})


@dataclass(frozen=True)
class State:
    state: str
    reason: str
    next_step: str
    next_action: str


def can_run(version: GearVersion, engine_version: str | None = None) -> bool:
    """Whether ``version`` may run on this engine (its ``engine`` range includes it)."""
    return runs_on(version.manifest or {}, engine_version or current_engine_version())


def _upgrade_or_contact(upgrade_to: str | None, why: str) -> tuple[str, str]:
    if upgrade_to:
        return (f"Change to version {upgrade_to}, which {why}.", "upgrade")
    return ("Contact the publisher for a version that runs; no other version is available "
            "yet.", "contact_publisher")


def compute_state(inst: Installation, version: GearVersion | None,
                  health: InstallationHealth | None, *, upgrade_to: str | None = None,
                  engine_version: str | None = None) -> State:
    """The installation's explicit state with its reason and what to do next.

    ``upgrade_to`` is the newest public version the user could move to (if any).
    """
    manifest = version.manifest if version is not None else {}
    if version is not None and version.quarantined:
        why = version.quarantine_reason or "the marketplace found a problem with it"
        step, action = _upgrade_or_contact(upgrade_to, "is not quarantined")
        return State("quarantined", f"Version {inst.version} is quarantined: {why}. "
                     "The engine does not run it.", step, action)
    engine = engine_version or current_engine_version()
    mismatch = engine_mismatch(manifest, engine) if version is not None else None
    if inst.status is InstallationStatus.suspended or mismatch:
        said = (inst.disabled_reason if inst.status is InstallationStatus.suspended
                and inst.disabled_reason else mismatch)
        reason = f"Version {inst.version} cannot run on this engine: {said or 'suspended'}."
        step, action = _upgrade_or_contact(upgrade_to, "may run on this engine")
        return State("incompatible", reason, step + " It resumes by itself when a compatible "
                     "version is installed or the engine changes.", action)
    if inst.status is InstallationStatus.disabled or (
            not inst.enabled and inst.status is not InstallationStatus.failed):
        reason = (f"Turned off: {inst.disabled_reason}" if inst.disabled_reason
                  else "Turned off by a member of this workspace.")
        return State("disabled", reason, "Enable it to run it again.", "enable")
    code = health.not_running_code if health is not None else None
    if code is not None and health is not None and code not in _SHOWN_ELSEWHERE and (
            inst.status is InstallationStatus.failed or health.not_running_at is None
            or inst.updated_at is None or health.not_running_at >= inst.updated_at):
        # a start failure older than the last change of an active installation is stale:
        # that change retired the worker and the next call starts afresh
        detail = health.not_running_reason or code
        if code in TAMPER_CODES:
            return State("tampered", "The engine's copy of this gear does not match what the "
                         f"registry signed, so it was not started: {detail}",
                         "Retry once the marketplace operator has restored the gear's files "
                         "(each start verifies them again); contact the operator if it "
                         "persists.", "retry")
        if inst.status is not InstallationStatus.failed:
            return State("failed_to_start", f"Its last start failed ({code}): {detail}",
                         "Retry: the next call starts it again. If it keeps failing, contact "
                         "the publisher.", "retry")
    if inst.status is InstallationStatus.failed:
        return State("stopped_by_breaker", inst.disabled_reason
                     or "Stopped after repeated failures.",
                     "Fix the cause shown in the last error, then enable it again to retry. "
                     "If it keeps failing, upgrade or contact the publisher.", "retry")
    if health is not None and (health.started_at is not None or health.calls > health.errors):
        return State("running", "Running and answering calls." if health.calls
                     else "Its worker started; no call yet.", "Nothing to do.", "none")
    return State("waiting", "Waiting for its first call: the engine starts its worker when "
                 "a hook it declares is first needed.", "Nothing to do.", "none")


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt is not None else None


def health_numbers(health: InstallationHealth | None) -> dict[str, Any]:
    """The shared counters as the API shows them (zeros before the first call)."""
    if health is None:
        return {"calls": 0, "errors": 0, "timeouts": 0, "restarts": 0, "busy": 0,
                "failures": {}, "p50_ms": None, "p99_ms": None, "last_error": None,
                "last_error_at": None, "last_call_at": None, "logs": [], "updated_at": None}
    buckets = list(health.latency_buckets or [])
    return {
        "calls": int(health.calls), "errors": int(health.errors),
        "timeouts": int(health.timeouts), "restarts": int(health.restarts),
        "busy": int(health.busy),
        "failures": {str(k): int(v) for k, v in sorted(dict(health.failures or {}).items())},
        "p50_ms": histogram_percentile(buckets, 0.50),
        "p99_ms": histogram_percentile(buckets, 0.99),
        "last_error": health.last_error, "last_error_at": _iso(health.last_error_at),
        "last_call_at": _iso(health.last_call_at),
        "logs": [dict(line) for line in (health.logs or []) if isinstance(line, dict)],
        "updated_at": _iso(health.updated_at),
    }


def health_rows(session: Session, ids: Iterable[str]) -> dict[str, InstallationHealth]:
    """The shared health rows of ``ids`` (read fresh: another process wrote them)."""
    wanted = list(ids)
    if not wanted:
        return {}
    rows = session.scalars(select(InstallationHealth)
                           .where(InstallationHealth.installation_id.in_(wanted))
                           .execution_options(populate_existing=True)).all()
    return {r.installation_id: r for r in rows}


def installation_health(inst: Installation, version: GearVersion | None,
                        health: InstallationHealth | None, *,
                        upgrade_to: str | None = None) -> dict[str, Any]:
    """The ``health`` object of the API and the pages: state, reason, next step, numbers."""
    state = compute_state(inst, version, health, upgrade_to=upgrade_to)
    return {"state": state.state, "reason": state.reason, "next_step": state.next_step,
            "next_action": state.next_action, **health_numbers(health)}
