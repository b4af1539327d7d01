"""The dashboard's "Test connection": the engine's connector check, as the pages see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

from marketplace.services import CONNECTION_TESTER, service


@dataclass(frozen=True)
class ConnectionResult:
    """What a connection test found: ``ok`` and a sentence for the user."""

    ok: bool
    message: str


def connection_tester(app: Flask) -> Callable[[Any], ConnectionResult] | None:
    """The engine's connection test for ``app``, as a ConnectionResult, or ``None``."""
    test = service(app, CONNECTION_TESTER)
    if test is None:
        return None

    def run(installation: Any) -> ConnectionResult:
        found = test(installation)
        return ConnectionResult(bool(found.get("ok")), str(found.get("message") or "the connection works"))

    return run
