"""Names under which a layer offers a service to the layers above it.

The engine sits below the pages, so it cannot call into them, and the pages
must not reach into the engine's modules. Instead the engine registers what it
offers on the app (``app.extensions[NAME] = callable``) in its ``init_app``,
and a page looks it up per request. Each app has its own services; nothing is
set on a module, so two apps in one process never see each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

#: ``(installation_id) -> dict | None``: the runtime's view of an installation's health.
INSTALLATION_HEALTH = "gears.installation_health"
#: ``(installation_row) -> {"ok": bool, "message": str, ...}``: a connector's ``gear_check``.
CONNECTION_TESTER = "gears.connection_tester"


def service(app: Flask, name: str) -> Callable[..., Any] | None:
    """The service registered under ``name``, or ``None`` when no layer offers it."""
    found = app.extensions.get(name)
    return found if callable(found) else None
