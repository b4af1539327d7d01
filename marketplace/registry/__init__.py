"""The registry: publish, store, version and serve gears (``/api/v1/gears``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from marketplace import openapi
    from marketplace.registry.api import bp

    app.register_blueprint(bp)
    openapi.init_app(app)
