"""The registry: publish, store, version and serve gears (``/api/v1/gears``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # the API modules reach vetting, whose jobs import registry modules (and so this
    # package): the blueprints load when the app is built, not with the package
    from marketplace import openapi
    from marketplace.registry.api import bp
    from marketplace.registry.trust_api import bp as trust_bp

    app.register_blueprint(bp)
    app.register_blueprint(trust_bp)
    openapi.init_app(app)
