"""marketplace: the server side of Gears (registry, catalog, review, engine, runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flask import Flask

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the registry app; see :func:`marketplace.app.create_app`."""
    # Imported here so that ``import marketplace.storage`` (or the SDK side) does
    # not pull in Flask and every blueprint.
    from marketplace.app import create_app as _create_app

    return _create_app(config)
