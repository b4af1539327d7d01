"""Workspaces: gears installed into a workspace, their config, secrets and consent.

The service functions (:mod:`~marketplace.workspaces.service`) are what the
API, the web pages and the runtime call; they are re-exported here.
``init_app`` attaches the secret box to the app's database sessions and mounts
``/api/v1/workspaces/<ws>/installations``.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from marketplace.db import database
from marketplace.workspaces import events, secrets
from marketplace.workspaces.api import bp
from marketplace.workspaces.capabilities import (
    CapabilityDiff,
    capabilities_of,
    capability_diff,
    describe_capability,
)
from marketplace.workspaces.models import Installation, InstallationStatus
from marketplace.workspaces.planning import Dependency, InstallPlan, plan_install
from marketplace.workspaces.secrets import SecretBox, installation_secrets
from marketplace.workspaces.serialize import (
    installation_json,
    masked_config,
    plan_json,
)
from marketplace.workspaces.service import (
    check_consent,
    get_installation,
    install,
    list_installations,
    mark_failed,
    set_enabled,
    uninstall,
    update_config,
    upgrade,
)
from marketplace.workspaces.validation import apply_defaults, validate_config

__all__ = [
    "CapabilityDiff",
    "Dependency",
    "InstallPlan",
    "Installation",
    "InstallationStatus",
    "SecretBox",
    "apply_defaults",
    "capabilities_of",
    "capability_diff",
    "check_consent",
    "describe_capability",
    "events",
    "get_installation",
    "init_app",
    "install",
    "installation_json",
    "installation_secrets",
    "list_installations",
    "mark_failed",
    "masked_config",
    "plan_install",
    "plan_json",
    "set_enabled",
    "uninstall",
    "update_config",
    "upgrade",
    "validate_config",
]


class InstallationIdConverter(BaseConverter):
    """Matches installation ids (:func:`~marketplace.workspaces.models.new_installation_id`)."""

    regex = "[0-9a-f]{32}"


def init_app(app: Flask) -> None:
    """Give the app's sessions the secret box and mount the installations API."""
    # Installation ids are 32 hex digits: "/installations/plan" and other words are never
    # routed as one (a PATCH or DELETE there is 405, not "no installation 'plan'").
    app.url_map.converters["installation_id"] = InstallationIdConverter
    fallbacks = app.config["SECRET_KEY_FALLBACKS"]
    secrets.attach(database(app).sessionmaker,
                   SecretBox(app.config["SECRET_KEY"], list(fallbacks)))
    app.register_blueprint(bp)
