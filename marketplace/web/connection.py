"""The dashboard's "Test connection": the engine's connector check, as the pages see it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from marketplace import services


@dataclass(frozen=True)
class ConnectionResult:
    """What a connection test found: ``ok`` and a sentence for the user."""

    ok: bool
    message: str


def test_connection(app: Flask, workspace: str, installation: str) -> ConnectionResult:
    """Run a connector's ``gear_check`` through the app's engine service (in this process
    or on an engine node); a gear that fails or refuses is ``ok: False`` with its reason,
    an engine that cannot be reached raises ``503 engine_unavailable``."""
    found = services.engine(app).check_connection(workspace, installation)
    return ConnectionResult(bool(found.get("ok")),
                            str(found.get("message") or "the connection works"))
