"""Alembic environment for the registry's database.

The database URL always comes from the app's settings, never from an
``alembic.ini``: :func:`marketplace.db.upgrade` passes the app in
``config.attributes["app"]`` (or an open connection in
``config.attributes["connection"]``); run through the ``alembic`` command, the
app is built with :func:`marketplace.create_app`, exactly like the server.
"""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy.engine import Connection

from marketplace import models  # noqa: F401  (registers the core tables on Base.metadata)
from marketplace.app import BLUEPRINT_MODULES
from marketplace.db import Base, database, include_object

# Each domain package imports its own models; importing them all registers
# every table, so autogenerate and comparisons see the whole schema.
for _module in BLUEPRINT_MODULES:
    importlib.import_module(_module)

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    app = config.attributes.get("app")
    if app is None:  # alembic's own command line: build the app only then
        from marketplace import create_app

        app = create_app()
    with database(app).engine.connect() as conn:
        _configure(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
