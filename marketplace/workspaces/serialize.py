"""Installations and install plans as the API shows them.

Secret config values are never rendered: each secret field appears as
``{"set": true|false}``. ``health`` is the installation's explicit state and
shared numbers from :mod:`marketplace.workspaces.health`, read from the database
every engine process writes to, so every web process shows the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session

from gears_sdk.manifest import secret_fields
from marketplace.models import GearVersion
from marketplace.registry.queries import latest_public
from marketplace.workspaces.capabilities import described
from marketplace.workspaces.health import can_run, health_rows, installation_health
from marketplace.workspaces.models import Installation
from marketplace.workspaces.planning import InstallPlan, is_newer
from marketplace.workspaces.secrets import installation_secrets
from marketplace.workspaces.validation import config_schema_of


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt is not None else None


def _version_row(inst: Installation) -> GearVersion | None:
    return next((v for v in inst.gear.versions if v.version == inst.version), None)


def masked_config(inst: Installation, manifest: dict[str, Any]) -> dict[str, Any]:
    """The config as shown to people: secrets as ``{"set": bool}``, never their values."""
    names = secret_fields(config_schema_of(manifest))
    out = dict(inst.config or {})
    stored = installation_secrets(inst) if names and inst.secrets_encrypted else {}
    for name in names:
        out[name] = {"set": name in stored}
    return out


def installation_url(inst: Installation, base_url: str) -> str:
    return f"{base_url}/api/v1/workspaces/{inst.workspace.name}/installations/{inst.id}"


def installation_json(inst: Installation, base_url: str) -> dict[str, Any]:
    """An installation as the API and the web pages show it."""
    row = _version_row(inst)
    manifest = row.manifest if row is not None else {}
    latest = latest_public(inst.gear)
    upgrade = bool(latest and is_newer(latest.version, inst.version))
    session = object_session(inst)
    shared = health_rows(session, [inst.id]).get(inst.id) if session is not None else None
    upgrade_to = (latest.version if latest is not None and latest.version != inst.version
                  and can_run(latest) else None)
    return {
        "id": inst.id,
        "workspace": inst.workspace.name,
        "gear": inst.gear.name,
        "title": inst.gear.title,
        "kind": inst.gear.kind,
        "version": inst.version,
        "constraint": inst.constraint,
        "status": inst.status.value,
        "enabled": inst.enabled,
        "disabled_reason": inst.disabled_reason,
        "config": masked_config(inst, manifest),
        "capabilities": described(list(inst.consented_capabilities or [])),
        "latest_version": latest.version if latest else None,
        "upgrade_available": upgrade,
        "version_yanked": bool(row and row.yanked),
        "version_quarantined": bool(row and row.quarantined),
        "health": installation_health(inst, row, shared, upgrade_to=upgrade_to),
        "created_at": _iso(inst.created_at),
        "updated_at": _iso(inst.updated_at),
        "url": installation_url(inst, base_url),
    }


def plan_json(plan: InstallPlan, base_url: str) -> dict[str, Any]:
    """What the consent screen needs: the chosen version, its capabilities in words,
    its config schema, its dependencies and, for an upgrade, what changes."""
    manifest = plan.manifest
    schema = config_schema_of(manifest)
    upgrade = None
    if plan.current is not None:
        upgrade = {
            "installation": plan.current.id,
            "from_version": plan.current.version,
            "added": described(plan.diff.added),
            "removed": described(plan.diff.removed),
            "unchanged": described(plan.diff.unchanged),
        }
    return {
        "gear": plan.gear.name,
        "title": manifest.get("title") or plan.gear.title,
        "summary": manifest.get("summary") or plan.gear.summary,
        "kind": plan.gear.kind,
        "version": plan.version.version,
        "constraint": plan.constraint,
        "capabilities": described(plan.capabilities),
        "consent_required": bool(plan.capabilities) if plan.current is None
        else plan.diff.grows,
        "config_schema": schema,
        "secret_fields": secret_fields(schema),
        "requires": [{"gear": d.gear, "range": d.range,
                      "installed_version": d.installed_version, "satisfied": d.satisfied}
                     for d in plan.dependencies],
        "resolution": dict(plan.resolution),
        "upgrade": upgrade,
        "version_url": f"{base_url}/api/v1/gears/{plan.gear.name}/{plan.version.version}",
    }
