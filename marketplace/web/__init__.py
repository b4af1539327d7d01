"""The web catalog: the pages business users browse, sign in to, and install gears from.

Server-rendered Jinja pages styled by the app's own stylesheet; every page works
without JavaScript (``static/gears.js`` only adds conveniences), and the strict
CSP of :mod:`marketplace.app` applies unchanged: no inline script or style.

Security lives in small modules: :mod:`.csrf` (a per-session token checked on
every unsafe request outside ``/api``), :mod:`.session` (login sessions rotated
on sign-in, same-site ``next=`` targets only) and :mod:`marketplace.ratelimit` (failed
sign-ins per IP and email).

The pages reach the engine only through the app's engine service
(:func:`marketplace.services.engine`): the engine pages, and the dashboard's "Test
connection" button, which runs the connector's ``gear_check``.
"""

from __future__ import annotations

from flask import Flask

from marketplace.web import csrf, session, templating
from marketplace.web.views_account import bp as account_bp
from marketplace.web.views_catalog import bp as catalog_bp
from marketplace.web.views_engine import bp as engine_bp
from marketplace.web.views_install import bp as install_bp
from marketplace.web.views_workspace import bp as workspace_bp


def init_app(app: Flask) -> None:
    """Mount the catalog, account, workspace and engine pages, with CSRF and template helpers."""
    csrf.init_app(app)
    session.init_app(app)
    templating.init_app(app)
    for bp in (catalog_bp, account_bp, workspace_bp, install_bp, engine_bp):
        app.register_blueprint(bp)
