"""The Flask app factory.

:func:`create_app` resolves the settings (:mod:`marketplace.config`), attaches
the extensions (database, blob store, error handlers) through their
``init_app`` functions, then lets each domain package register its blueprint
through its own ``init_app``. The app holds no state of its own beyond these,
so any number of replicas can serve the same database and blob store.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from marketplace import blobs, db, errors, http_input
from marketplace.config import load_settings
from marketplace.settings import warn_unknown

#: Domain packages, each exposing ``init_app(app)`` that registers its blueprint(s).
#: Add a package here to mount it; the order is the order of registration. With
#: ``ENGINE_URLS`` set, :data:`REMOTE_ENGINE` takes the engine's place: this process
#: runs no engine, it reaches engine nodes (:mod:`marketplace.engine_service`).
BLUEPRINT_MODULES: tuple[str, ...] = (
    "marketplace.health",
    "marketplace.accounts",
    "marketplace.registry",
    "marketplace.workspaces",
    "marketplace.vetting",
    "marketplace.web",
    "marketplace.admin",
    "marketplace.engine",
)
EMBEDDED_ENGINE = "marketplace.engine"
REMOTE_ENGINE = "marketplace.engine_proxy"

#: Sent with every response. The CSP allows only same-origin resources, no
#: plugins, no framing and no <base> rewriting; views needing more set their own.
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the registry app.

    ``config`` overrides every other settings layer (defaults, ``instance/gears.toml``
    or ``GEARS_CONFIG``, ``GEARS_*`` environment variables); tests use it.
    """
    settings = load_settings(config)
    warn_unknown()
    app = Flask("marketplace", instance_path=settings["INSTANCE_PATH"],
                instance_relative_config=True)
    app.config.update(settings)
    # Never let the Flask session cookie leave over plain HTTP when served over HTTPS.
    base_url = settings.get("BASE_URL") or ""
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    # Flask ships SESSION_COOKIE_SAMESITE=None, so setdefault would never apply.
    app.config["SESSION_COOKIE_SAMESITE"] = settings.get("SESSION_COOKIE_SAMESITE") or "Lax"
    app.config["SESSION_COOKIE_SECURE"] = base_url.startswith("https://")

    errors.init_app(app)
    http_input.init_app(app)
    db.init_app(app)
    blobs.init_app(app)
    for module_name in BLUEPRINT_MODULES:
        if module_name == EMBEDDED_ENGINE and app.config["ENGINE_URLS"]:
            module_name = REMOTE_ENGINE
        importlib.import_module(module_name).init_app(app)
    app.after_request(_security_headers)
    trust_proxies(app)
    return app


def trust_proxies(app: Flask) -> None:
    """Believe ``X-Forwarded-For``/``-Proto``/``-Host`` from ``TRUSTED_PROXIES`` hops.

    With the default 0 the client address is the socket's peer and forwarded
    headers are ignored (anyone could send them). Behind N proxies, werkzeug's
    ``ProxyFix`` takes the N-th address from the right: the one the outermost
    trusted proxy saw, which a client cannot forge. Rate limits and logs use it.
    """
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
