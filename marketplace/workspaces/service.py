"""Installing gears into workspaces: the operations behind the API and the web pages.

Plain functions over a SQLAlchemy session, without Flask, so the API, the web
pages, the operator CLI and the runtime share one implementation. Each change
commits its own transaction — the change, its audit entry, the gear's install
count and its row in the engine's outbox (:mod:`marketplace.workspaces.outbox`)
together — and only then announces itself through
:mod:`marketplace.workspaces.events`, so listeners never act on a change that
was rolled back, and engine nodes in other processes learn of every change.
Refusals raise :class:`~marketplace.errors.MarketplaceError` with a stable code:

``gear_not_found`` 404, ``installation_not_found`` 404, ``invalid_version`` 422,
``invalid_config`` 422 (every problem in ``details``), ``consent_required`` 422
(every capability not consented to in ``details``), ``already_installed`` 409,
``missing_dependency`` 409, ``unresolvable`` 409, ``required_by`` 409,
``version_quarantined`` 409, ``engine_incompatible`` 409.

Secret config values follow one rule everywhere: a secret left out, blank, or
sent back as its mask ``{"set": …}`` keeps the stored value; an explicit
``null`` clears it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from gears_sdk.manifest import secret_fields
from marketplace import audit
from marketplace.audit import SystemActor
from marketplace.db import utcnow
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, User, Workspace
from marketplace.registry.states import lock_gear
from marketplace.settings import engine_version
from marketplace.workspaces import events, outbox
from marketplace.workspaces.capabilities import describe_capability
from marketplace.workspaces.models import Installation, InstallationStatus
from marketplace.workspaces.planning import (
    engine_mismatch,
    find_gear,
    find_version,
    is_newer,
    plan_install,
    workspace_installations,
)
from marketplace.workspaces.secrets import box_for
from marketplace.workspaces.validation import config_schema_of, validate_config

MAX_REASON = 2000

Consent = list[str] | bool


# -- reading ------------------------------------------------------------------------------


def list_installations(session: Session, workspace: Workspace) -> list[Installation]:
    """The workspace's installations, by gear name."""
    return workspace_installations(session, workspace)


def get_installation(session: Session, workspace: Workspace, installation_id: str) -> Installation:
    """One installation of ``workspace``; 404 ``installation_not_found`` otherwise
    (also for an id that belongs to another workspace)."""
    inst = session.get(Installation, installation_id) if isinstance(installation_id, str) else None
    if inst is None or inst.workspace_id != workspace.id:
        raise MarketplaceError(404, "installation_not_found",
                               f"workspace {workspace.name!r} has no installation "
                               f"{installation_id!r}")
    return inst


# -- helpers --------------------------------------------------------------------------------


def check_consent(capabilities: Iterable[str], consent: Any,
                  already: Iterable[str] = ()) -> None:
    """Refuse with ``consent_required`` unless ``consent`` covers every capability.

    ``consent=True`` accepts every capability shown; a list must contain each
    capability not already in ``already`` (what the user consented to before).
    """
    if consent is True:
        return
    given = set(already)
    if isinstance(consent, list) and all(isinstance(c, str) for c in consent):
        given |= set(consent)
    elif consent not in (None, False):
        raise MarketplaceError(422, "invalid_consent", "consent must be true or the list of "
                               "capabilities you accept",
                               [{"path": "$.consent", "message": "must be true or a list of "
                                 "capability strings", "code": "schema.type"}])
    missing = [c for c in capabilities if c not in given]
    if missing:
        raise MarketplaceError(
            422, "consent_required",
            f"this gear needs your consent to {len(missing)} capabilit"
            f"{'y' if len(missing) == 1 else 'ies'}: "
            + "; ".join(describe_capability(c) for c in missing),
            [{"path": "$.consent", "message": describe_capability(c), "code": "capability",
              "capability": c} for c in missing])


def _is_mask(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"set"}


def _with_secrets(submitted: dict[str, Any], secret_names: Iterable[str],
                  stored: dict[str, Any]) -> dict[str, Any]:
    """``submitted`` with the keep/clear rule for secrets applied (see the module doc)."""
    out = dict(submitted)
    for name in secret_names:
        value = out.get(name, "")
        if value == "" or _is_mask(value):
            if name in stored:
                out[name] = stored[name]
            else:
                out.pop(name, None)
        elif value is None:
            out.pop(name)
    return out


def _checked_config(manifest: dict[str, Any], submitted: Any, stored_secrets: dict[str, Any],
                    what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if submitted is not None and not isinstance(submitted, dict):
        raise MarketplaceError(422, "invalid_config", "the config must be a JSON object",
                               [{"path": "$.config", "message": "must be an object",
                                 "code": "schema.type"}])
    names = secret_fields(config_schema_of(manifest))
    clean, secrets, problems = validate_config(
        manifest, _with_secrets(submitted or {}, names, stored_secrets))
    if problems:
        n = len(problems)
        raise MarketplaceError(
            422, "invalid_config",
            f"the config for {what} has {n} problem{'s' if n != 1 else ''}: "
            + "; ".join(f"{p['path']} {p['message']}" for p in problems),
            [{**p, "path": "$.config" + p["path"][1:]} for p in problems])
    return clean, secrets


def _state(inst: Installation) -> dict[str, Any]:
    """What the audit log keeps: never secret values, only which secrets are set."""
    return {"workspace": inst.workspace.name, "gear": inst.gear.name, "version": inst.version,
            "constraint": inst.constraint, "status": inst.status.value,
            "enabled": inst.enabled, "disabled_reason": inst.disabled_reason,
            "config": dict(inst.config or {}),
            "secrets_set": _secret_names(inst),
            "capabilities": list(inst.consented_capabilities or [])}


def _secret_names(inst: Installation) -> list[str]:
    """Names of the secrets ``inst`` has set (decrypts, but returns names only)."""
    session = object_session(inst)
    if session is None or not inst.secrets_encrypted:
        return []
    return sorted(box_for(session).decrypt(inst.secrets_encrypted))


def _event(inst: Installation, **extra: Any) -> events.InstallationEvent:
    return events.InstallationEvent(
        id=inst.id, workspace=inst.workspace.name, gear=inst.gear.name, version=inst.version,
        status=inst.status.value, enabled=inst.enabled, config=dict(inst.config or {}), **extra)


def _reason(reason: str | None) -> str | None:
    text = (reason or "").strip() or None
    if reason and len(reason) > MAX_REASON:  # as sent: the documented maxLength
        raise MarketplaceError(422, "reason_too_long",
                               f"the reason may be at most {MAX_REASON} characters",
                               [{"path": "$.reason", "message": "too long", "code": "too_long"}])
    return text


# -- changes --------------------------------------------------------------------------------


def install(session: Session, workspace: Workspace, gear_name: str, *,
            version_spec: str | None = None, config: dict[str, Any] | None = None,
            consent: Consent = False, actor: User | SystemActor | None) -> Installation:
    """Install ``gear_name`` into ``workspace`` and commit.

    ``actor`` is who installs: a member, or a :class:`~marketplace.audit.SystemActor`
    (the demo seed), which is audited as such and installs as no user.

    The version is resolved by :func:`~marketplace.workspaces.planning.plan_install`;
    ``consent`` must cover every capability of the chosen version; the config is
    validated against its schema with defaults applied. The stored constraint is
    ``version_spec``, or the exact chosen version when none was given.
    """
    gear = find_gear(session, gear_name)
    if session.scalar(select(Installation.id).where(Installation.workspace_id == workspace.id,
                                                     Installation.gear_id == gear.id)):
        raise _already(workspace, gear)
    plan = plan_install(session, workspace, gear_name, version_spec)
    check_consent(plan.capabilities, consent)
    what = f"{gear.name} {plan.version.version}"
    clean, secrets = _checked_config(plan.manifest, config, {}, what)
    inst = Installation(
        workspace=workspace, gear=gear, version=plan.version.version,
        constraint=plan.constraint, config=clean,
        secrets_encrypted=box_for(session).encrypt(secrets), enabled=True,
        status=InstallationStatus.active, consented_capabilities=list(plan.capabilities),
        installed_by=actor if isinstance(actor, User) else None)
    session.add(inst)
    try:
        session.flush()
    except IntegrityError:  # a concurrent install of the same gear won
        session.rollback()
        raise _already(workspace, gear) from None
    recount_installs(session, gear)
    audit.record(session, actor, "installation.install", "installation", inst.id,
                 after=_state(inst))
    outbox.record(session, outbox.EventKind.installed, inst)
    session.commit()
    events.announce(events.on_installed, _event(inst))
    return inst


def _already(workspace: Workspace, gear: Gear) -> MarketplaceError:
    return MarketplaceError(409, "already_installed",
                            f"{gear.name} is already installed in {workspace.name!r}; upgrade "
                            "or reconfigure that installation instead")


def upgrade(session: Session, inst: Installation, *, version_spec: str | None = None,
            consent: Consent = False, actor: User | None,
            config: dict[str, Any] | None = None) -> Installation:
    """Move ``inst`` to another version (newer, older, or the newest its constraint allows
    when ``version_spec`` is ``None``) and commit.

    Consent is asked again only when the target version's capabilities grow.
    The config (``config`` if given, else the current one) is re-validated
    against the target's schema with its defaults applied; stored secrets are
    kept for fields that are still secret. Fields a schema with
    ``"additionalProperties": false`` no longer knows are dropped.
    """
    plan = plan_install(session, inst.workspace, inst.gear.name, version_spec)
    if plan.diff.grows:
        check_consent(plan.capabilities, consent, already=inst.consented_capabilities)
    box = box_for(session)
    stored = box.decrypt(inst.secrets_encrypted)
    schema = config_schema_of(plan.manifest)
    base = dict(inst.config or {}) if config is None else dict(config)
    if schema.get("additionalProperties") is False:
        known = set(schema.get("properties") or {})
        base = {k: v for k, v in base.items() if k in known}
    what = f"{inst.gear.name} {plan.version.version}"
    clean, secrets = _checked_config(plan.manifest, base, stored, what)
    previous = inst.version
    if (previous, inst.constraint, inst.config, stored) == \
            (plan.version.version, plan.constraint, clean, secrets):
        return inst  # nothing changes: no audit entry, no restart
    before = _state(inst)
    inst.version, inst.constraint = plan.version.version, plan.constraint
    inst.config = clean
    inst.secrets_encrypted = box.encrypt(secrets) if secrets != stored else inst.secrets_encrypted
    inst.consented_capabilities = list(plan.capabilities)
    _resume_on_change(inst, plan.manifest)
    action = ("installation.configure" if previous == inst.version else
              "installation.upgrade" if is_newer(inst.version, previous) else
              "installation.downgrade")
    audit.record(session, actor, action, "installation", inst.id, before=before,
                 after=_state(inst))
    outbox.record(session, outbox.EventKind.changed, inst)
    session.commit()
    if previous != inst.version:
        events.announce(events.on_upgraded, _event(inst, previous_version=previous))
    else:
        events.announce(events.on_config_changed, _event(inst))
    return inst


def _resume_on_change(inst: Installation, manifest: dict[str, Any]) -> None:
    """A new version or config clears what the system set, never what a user set: a
    ``failed`` installation (its breaker judged the old version or config) runs again,
    and a ``suspended`` one runs again when its version now fits this engine."""
    if inst.status is InstallationStatus.failed or (
            inst.status is InstallationStatus.suspended
            and engine_mismatch(manifest, engine_version()) is None):
        inst.enabled, inst.status, inst.disabled_reason = True, InstallationStatus.active, None


def update_config(session: Session, inst: Installation, config: dict[str, Any] | None,
                  actor: User | None) -> Installation:
    """Replace ``inst``'s config (validated against its version's schema) and commit.

    Non-secret fields left out fall back to their defaults; secrets follow the
    keep/clear rule in the module docstring.
    """
    version = find_version(session, inst.gear, inst.version)
    box = box_for(session)
    stored = box.decrypt(inst.secrets_encrypted)
    clean, secrets = _checked_config(version.manifest, config, stored,
                                     f"{inst.gear.name} {inst.version}")
    if clean == inst.config and secrets == stored:
        return inst
    before = _state(inst)
    inst.config = clean
    if secrets != stored:
        inst.secrets_encrypted = box.encrypt(secrets)
    _resume_on_change(inst, version.manifest)
    audit.record(session, actor, "installation.configure", "installation", inst.id,
                 before=before, after=_state(inst))
    outbox.record(session, outbox.EventKind.changed, inst)
    session.commit()
    events.announce(events.on_config_changed, _event(inst))
    return inst


def set_enabled(session: Session, inst: Installation, enabled: bool, actor: User | None,
                reason: str | None = None) -> Installation:
    """Enable or disable ``inst`` and commit.

    Re-enabling a ``failed`` installation clears the runtime's reason and gives
    it a fresh start. A quarantined version cannot be re-enabled: quarantine
    blocks it from loading anywhere. A version that cannot run on this engine is
    enabled as ``suspended``, with the reason. Setting the state it already has
    is a no-op.
    """
    reason = _reason(reason)
    if enabled == inst.enabled and (enabled or inst.status is InstallationStatus.disabled):
        return inst
    if enabled:
        version = find_version(session, inst.gear, inst.version)
        if version.quarantined:
            raise MarketplaceError(409, "version_quarantined",
                                   f"{inst.gear.name} {inst.version} is quarantined and cannot "
                                   "run; upgrade or downgrade to another version first")
    before = _state(inst)
    inst.enabled = enabled
    inst.status = InstallationStatus.active if enabled else InstallationStatus.disabled
    inst.disabled_reason = None if enabled else reason
    if enabled:
        why = engine_mismatch(find_version(session, inst.gear, inst.version).manifest,
                              engine_version())
        if why is not None:
            inst.status, inst.disabled_reason = InstallationStatus.suspended, why
    audit.record(session, actor, "installation.enable" if enabled else "installation.disable",
                 "installation", inst.id, before=before, after=_state(inst), reason=reason)
    outbox.record(session, outbox.EventKind.changed, inst)
    session.commit()
    events.announce(events.on_enabled_changed, _event(inst))
    return inst


def mark_failed(session: Session, installation_id: str, reason: str) -> Installation | None:
    """Disable an installation on behalf of the runtime's circuit breaker, and commit.

    ``reason`` is what the UI shows ("crashed 5 times in 10 minutes: …").
    Returns ``None`` when the installation no longer exists (uninstalled
    meanwhile); an installation a user disabled stays ``disabled``.
    """
    reason = _reason(reason) or "the gear kept failing"
    inst = session.get(Installation, installation_id)
    if inst is None:
        return None
    if inst.status is not InstallationStatus.active:
        return inst
    before = _state(inst)
    inst.enabled = False
    inst.status = InstallationStatus.failed
    inst.disabled_reason = reason
    audit.record(session, None, "installation.fail", "installation", inst.id,
                 before=before, after=_state(inst), reason=reason)
    outbox.record(session, outbox.EventKind.changed, inst)
    session.commit()
    events.announce(events.on_enabled_changed, _event(inst))
    return inst


def set_suspended(session: Session, installation_id: str, *, version: str,
                  suspended: bool, reason: str | None = None) -> Installation | None:
    """Suspend (``active`` -> ``suspended``, with ``reason``) or resume (``suspended`` ->
    ``active``) an installation on behalf of the engine, and commit.

    One conditional update on the status and installed version it was judged by, so
    concurrent engines starting together change it once, and a user's disable, the
    breaker or an upgrade that happened meanwhile wins. Audited as the engine; returns
    the installation when it changed, else ``None``.
    """
    inst = session.get(Installation, installation_id)
    if inst is None:
        return None
    before = _state(inst)
    was, now = ((InstallationStatus.active, InstallationStatus.suspended) if suspended else
                (InstallationStatus.suspended, InstallationStatus.active))
    done = session.execute(
        update(Installation)
        .where(Installation.id == installation_id, Installation.status == was,
               Installation.version == version)
        .values(status=now, disabled_reason=reason if suspended else None,
                updated_at=utcnow()),
        execution_options={"synchronize_session": False})
    if done.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return None
    session.refresh(inst)
    audit.record(session, SystemActor.engine,
                 "installation.suspend" if suspended else "installation.resume",
                 "installation", inst.id, before=before, after=_state(inst),
                 reason=reason)
    outbox.record(session, outbox.EventKind.changed, inst)
    session.commit()
    events.announce(events.on_enabled_changed, _event(inst))
    return inst


def suspensions(session: Session, engine: str) -> list[tuple[str, str, str | None]]:
    """``(installation id, installed version, reason)`` for every installation whose
    status should change on engine ``engine``: an active one whose version cannot run
    on it (reason: which engine it needs), a suspended one whose version now can
    (reason ``None``)."""
    rows = session.execute(
        select(Installation.id, Installation.version, Installation.status,
               GearVersion.manifest, Gear.name)
        .join(Gear, Installation.gear_id == Gear.id)
        .join(GearVersion, (GearVersion.gear_id == Gear.id)
              & (GearVersion.version == Installation.version))
        .where(Installation.status.in_([InstallationStatus.active,
                                        InstallationStatus.suspended]))).all()
    out: list[tuple[str, str, str | None]] = []
    for iid, version, status, manifest, name in rows:
        why = engine_mismatch(manifest, engine)
        if status is InstallationStatus.active and why is not None:
            out.append((iid, version, f"{name} {version} {why}"))
        elif status is InstallationStatus.suspended and why is None:
            out.append((iid, version, None))
    return out


def uninstall(session: Session, inst: Installation, actor: User | None) -> None:
    """Remove ``inst`` from its workspace and commit.

    Refused with ``required_by`` while another installed gear requires it. The
    ``on_uninstalled`` event carries the last config and secrets, for
    ``gear_uninstall``.
    """
    dependents = []
    for other in workspace_installations(session, inst.workspace):
        if other.id == inst.id:
            continue
        manifest = find_version(session, other.gear, other.version).manifest
        if inst.gear.name in (manifest.get("requires") or {}):
            dependents.append(other.gear.name)
    if dependents:
        raise MarketplaceError(409, "required_by",
                               f"{inst.gear.name} is required by {', '.join(dependents)}; "
                               "uninstall those first")
    box = box_for(session)
    event = _event(inst, secrets=box.decrypt(inst.secrets_encrypted))
    gear, before, where = inst.gear, _state(inst), inst.workspace.name
    # Only the request whose DELETE removed the row goes on: concurrent uninstalls of one
    # installation get 404, and gear_uninstall runs once.
    gone = session.execute(delete(Installation).where(Installation.id == inst.id),
                           execution_options={"synchronize_session": False})
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise MarketplaceError(404, "installation_not_found",
                               f"workspace {where!r} has no installation {event.id!r}: it "
                               "was uninstalled meanwhile")
    outbox.record(session, outbox.EventKind.uninstalled, inst, final=True)
    session.expunge(inst)
    recount_installs(session, gear)
    audit.record(session, actor, "installation.uninstall", "installation", event.id,
                 before=before)
    session.commit()
    events.announce(events.on_uninstalled, event)


def recount_installs(session: Session, gear: Gear) -> None:
    """Set ``gear.install_count`` to the number of its installation rows.

    Derived, never incremented: under the gear's row lock (taken first, so the
    count's own statement sees every install committed before it) the count
    cannot drift, whatever installs and uninstalls race.
    """
    lock_gear(session, gear.id)
    count = select(func.count()).select_from(Installation).where(
        Installation.gear_id == gear.id).scalar_subquery()
    session.execute(update(Gear).where(Gear.id == gear.id).values(install_count=count),
                    execution_options={"synchronize_session": False})
    session.expire(gear, ["install_count", "updated_at"])
