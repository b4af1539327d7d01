"""The app an operator command works on, shared by ``marketplace`` and its subcommand groups.

Its own module so a subcommand group (``marketplace engine …``) can reach it
without importing the top-level command, which imports the group.
"""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy.engine import make_url

from marketplace import db
from marketplace.app import create_app


def get_app(ctx: click.Context) -> Flask:
    """The app whose settings the command uses: the one passed as ``obj`` (tests), else a
    new one built from the environment like the server's."""
    root = ctx.find_root()
    if not isinstance(root.obj, Flask):
        root.obj = create_app()
    return root.obj


def database_problem(app: Flask) -> str | None:
    """Why a server may not start on the app's database (never initialized, or at an
    older revision than this version needs), or ``None``."""
    label = make_url(app.config["DATABASE_URL"]).render_as_string(hide_password=True)
    current, head = db.current_revision(app), db.head_revision(app)
    if current is None:
        return f"the database {label} is not initialized; run `marketplace init` first"
    if current != head:
        return (f"the database {label} is at revision {current} but this version needs "
                f"{head}; run `marketplace db upgrade` first")
    return None
