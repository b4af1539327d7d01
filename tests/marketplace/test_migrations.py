"""The migrations create exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from marketplace.db import Base, current_revision, database, head_revision, is_up_to_date, upgrade


def test_migrated_schema_matches_models(app):
    with database(app).engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    assert diffs == []


def test_upgrade_is_idempotent_and_at_head(app):
    assert is_up_to_date(app)
    upgrade(app)
    assert current_revision(app) == head_revision(app)
    tables = set(inspect(database(app).engine).get_table_names())
    assert {"users", "publishers", "publisher_members", "workspaces", "workspace_members",
            "api_tokens", "gears", "gear_versions", "audit_entries"} <= tables
