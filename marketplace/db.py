"""The database: declarative base, one engine per app, sessions and migrations.

* Web requests use :func:`get_session`: one session per request, kept on
  ``flask.g``, rolled back if the request failed and closed at teardown.
  Nothing is committed implicitly: a view that changes data calls
  ``session.commit()`` itself, so a half-done change is never saved.
* The CLI and background work use :func:`session_scope`, which commits on
  success and rolls back on error.
* The schema is owned by the Alembic migrations in ``marketplace/migrations``;
  :func:`upgrade` runs them from code, so no ``alembic.ini`` is needed.

SQLite gets foreign keys, WAL and a busy timeout on every connection (several
gunicorn workers share the file). PostgreSQL URLs in any common spelling
(``postgres://``, ``postgresql://``) are rewritten to the psycopg 3 driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from gears_sdk.values import dumps_stored, loads_stored

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Stable constraint names: Alembic needs them to alter or drop constraints,
#: and SQLite batch migrations cannot address unnamed ones.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 15_000


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Database objects that are not ORM models: the full-text search machinery
#: created by the ``0005`` migration. Schema comparisons leave them out.
SEARCH_OBJECTS = frozenset({"gears_fts", "gears_fts_data", "gears_fts_idx", "gears_fts_docsize",
                            "gears_fts_config", "gears_fts_content", "ix_gears_search"})


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic ``include_object``: everything but :data:`SEARCH_OBJECTS`."""
    return name not in SEARCH_OBJECTS


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind the models store)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no zone type, so
    values are stored as UTC and the zone is put back when they are read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use marketplace.db.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_url(url: str) -> str:
    """Rewrite PostgreSQL URLs to the psycopg 3 driver; leave others alone."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the per-backend settings described above."""
    url = normalize_url(url)
    parsed = make_url(url)
    # every JSON column is read back repaired and written without NaN/Infinity (see
    # gears_sdk.values): rows stored before the value contract held can never fail a request
    kwargs: dict[str, Any] = {"future": True, "json_deserializer": loads_stored,
                              "json_serializer": dumps_stored}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False,
                                  "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or each thread would see its own empty database.
            kwargs["poolclass"] = StaticPool
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@dataclass
class Database:
    """What :func:`init_app` attaches to ``app.extensions["gears_db"]``."""

    engine: Engine
    sessionmaker: sessionmaker[Session]


#: ``session.info`` key set while a commit is under way: when the connection dies then,
#: the outcome is unknown (the server may have committed before the answer was lost).
COMMITTING = "gears_committing"
#: ``session.info`` key set once a commit succeeded: a connection lost afterwards (while
#: the answer is built) must not be reported as "nothing was changed". Bookkeeping
#: commits that are not the request's change (a token's ``last_used_at``) clear it.
COMMITTED = "gears_committed"


def _track_commits(factory: sessionmaker[Session]) -> None:
    def before_commit(session: Session) -> None:
        session.info[COMMITTING] = True

    def after_commit(session: Session) -> None:
        session.info.pop(COMMITTING, None)
        session.info[COMMITTED] = True

    def after_begin(session: Session, *_args: Any) -> None:
        session.info.pop(COMMITTING, None)

    event.listen(factory, "before_commit", before_commit)
    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_begin", after_begin)


def commit_outcome_unknown(session: Session | None) -> bool:
    """Whether ``session``'s last commit started and never finished (see :data:`COMMITTING`)."""
    return bool(session is not None and session.info.get(COMMITTING))


def committed_earlier(session: Session | None) -> bool:
    """Whether ``session`` committed the request's change already (see :data:`COMMITTED`)."""
    return bool(session is not None and session.info.get(COMMITTED))


def init_app(app: Flask) -> None:
    """Create the app's engine and session factory; close request sessions at teardown."""
    engine = make_engine(app.config["DATABASE_URL"])
    factory = sessionmaker(bind=engine)
    _track_commits(factory)
    app.extensions["gears_db"] = Database(engine, factory)
    app.teardown_appcontext(_close_request_session)


def database(app: Flask | None = None) -> Database:
    """The app's :class:`Database` (the current app when none is given)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions["gears_db"]


def get_session() -> Session:
    """The request's session, created on first use."""
    session: Session | None = g.get("gears_session")
    if session is None:
        session = database().sessionmaker()
        g.gears_session = session
    return session


def _close_request_session(exc: BaseException | None) -> None:
    """Roll back and close the request's session.

    This runs after the answer was made, outside the error handlers: a connection
    the database killed meanwhile must not turn that answer into the server's bare
    500, so a failure here is logged and the connection discarded instead.
    """
    session: Session | None = g.pop("gears_session", None)
    if session is None:
        return
    try:
        if exc is not None:
            session.rollback()
        session.close()
    except SQLAlchemyError as err:
        log.warning("discarding a broken database connection at teardown: %s",
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        try:
            session.invalidate()
        except SQLAlchemyError:  # already as discarded as it can be
            log.debug("invalidate after a failed close also failed", exc_info=True)


@contextmanager
def session_scope(app: Flask) -> Iterator[Session]:
    """A session for CLI and background work: committed on success, rolled back on error."""
    session = database(app).sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(app: Flask | None = None) -> None:
    """Run ``SELECT 1``; raises when the database cannot be reached."""
    with database(app).engine.connect() as conn:
        conn.execute(text("SELECT 1"))


#: How long the write probe waits for SQLite's write lock before calling the database busy.
PROBE_BUSY_TIMEOUT_MS = 1000


def probe_write(app: Flask | None = None) -> None:
    """Commit a write that changes nothing (``alembic_version`` set to itself); raises
    when the database cannot take writes — read-only, a full disk, a read-only
    replica, an unmigrated schema. A write lock held by someone else means the
    database is busy, not broken, and passes. ``SELECT 1`` proves none of this."""
    engine = database(app).engine
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={PROBE_BUSY_TIMEOUT_MS}")
        try:
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            conn.commit()
        except SQLAlchemyError as exc:
            conn.rollback()
            if "database is locked" not in str(exc).lower():
                raise
        finally:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


# -- migrations ---------------------------------------------------------------------------


def alembic_config(app: Flask) -> Any:
    """An Alembic ``Config`` built in code, pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["app"] = app
    return cfg


def upgrade(app: Flask, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (``alembic upgrade head``)."""
    from alembic import command

    command.upgrade(alembic_config(app), revision)


def head_revision(app: Flask) -> str | None:
    """The newest revision the packaged migrations know."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(app)).get_current_head()


def current_revision(app: Flask) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with database(app).engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(app: Flask) -> bool:
    """Whether the database exists and is migrated to the newest revision."""
    current = current_revision(app)
    return current is not None and current == head_revision(app)
