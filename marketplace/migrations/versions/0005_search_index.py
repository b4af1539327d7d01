"""Full-text search over the catalog: SQLite FTS5 and a PostgreSQL GIN index.

The tables and index live outside the ORM models (they are the database's own
search machinery), so migrations and schema comparisons ignore them by name
(see ``marketplace.db.SEARCH_OBJECTS``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "name, title, summary, categories"
NEW = "new.name, new.title, new.summary, new.categories"
OLD = "old.name, old.title, old.summary, old.categories"
# Must be the exact expression marketplace.registry.search.pg_document() renders.
PG_DOCUMENT = ("to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || "
               "coalesce(title, '') || ' ' || coalesce(summary, ''))")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"CREATE VIRTUAL TABLE gears_fts USING fts5({COLUMNS}, "
                   "content='gears', content_rowid='id', tokenize='unicode61')")
        op.execute(f"CREATE TRIGGER gears_fts_ai AFTER INSERT ON gears BEGIN "
                   f"INSERT INTO gears_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW}); END")
        op.execute(f"CREATE TRIGGER gears_fts_ad AFTER DELETE ON gears BEGIN "
                   f"INSERT INTO gears_fts(gears_fts, rowid, {COLUMNS}) "
                   f"VALUES ('delete', old.id, {OLD}); END")
        op.execute(f"CREATE TRIGGER gears_fts_au AFTER UPDATE ON gears BEGIN "
                   f"INSERT INTO gears_fts(gears_fts, rowid, {COLUMNS}) "
                   f"VALUES ('delete', old.id, {OLD}); "
                   f"INSERT INTO gears_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW}); END")
        op.execute("INSERT INTO gears_fts(gears_fts) VALUES ('rebuild')")
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX ix_gears_search ON gears USING gin (({PG_DOCUMENT}))")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("gears_fts_ai", "gears_fts_ad", "gears_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS gears_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_gears_search")
