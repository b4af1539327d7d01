"""Names under which a layer offers a service to the layers above it.

The engine sits below the pages, so it cannot call into them, and the pages
must not reach into the engine's modules. Instead what the engine offers is
registered on the app (``app.extensions[NAME]``) — the engine service by
``marketplace.engine.init_app`` (in-process) or by ``marketplace.engine_proxy``
(engine nodes) — and a page looks it up per request. Each app has its own
services; nothing is set on a module, so two apps in one process never see
each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask

from marketplace.errors import MarketplaceError

if TYPE_CHECKING:
    from marketplace.engine_service import EngineService

#: the app's :class:`~marketplace.engine_service.EngineService` (see :func:`engine`).
ENGINE = "gears.engine"


def service(app: Flask, name: str) -> Callable[..., Any] | None:
    """The service registered under ``name``, or ``None`` when no layer offers it."""
    found = app.extensions.get(name)
    return found if callable(found) else None


def engine(app: Flask) -> EngineService:
    """The app's engine service: in-process (embedded) or engine nodes over HTTP.

    The pages, the registry, the demo seed and the bench reach the engine only
    through it (:mod:`marketplace.engine_service`)."""
    found = app.extensions.get(ENGINE)
    if found is None:
        raise MarketplaceError(503, "engine_unavailable", "this server runs no engine and "
                               "knows no engine node (set GEARS_ENGINE_URLS)")
    return cast("EngineService", found)
