"""The migrations create exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from marketplace.db import (
    Base,
    current_revision,
    database,
    head_revision,
    include_object,
    is_up_to_date,
    upgrade,
)


def test_migrated_schema_matches_models(app):
    with database(app).engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        diffs = compare_metadata(ctx, Base.metadata)
    assert diffs == []


def test_upgrade_is_idempotent_and_at_head(app):
    assert is_up_to_date(app)
    upgrade(app)
    assert current_revision(app) == head_revision(app)
    tables = set(inspect(database(app).engine).get_table_names())
    assert {"users", "publishers", "publisher_members", "workspaces", "workspace_members",
            "api_tokens", "gears", "gear_versions", "audit_entries"} <= tables


def test_search_index_follows_gear_changes(app, session, make_user, make_publisher):
    """The full-text index is kept in sync by the database itself (triggers on SQLite)."""
    from marketplace.models import Gear
    from marketplace.registry.queries import Viewer
    from marketplace.registry.search import CatalogQuery, search

    admin = make_user(role="admin")
    publisher = make_publisher(name="acme")
    gear = Gear(publisher_id=publisher.id, name="acme/affinity", kind="extension",
                title="Category affinity", summary="Learns favourite categories", categories=[])
    session.add(gear)
    session.commit()
    viewer = Viewer(user=admin)
    if session.get_bind().dialect.name == "sqlite":
        from marketplace.registry.search import has_fts

        assert has_fts(session), "the FTS5 table should exist after migrating"

    def found(q: str) -> list[str]:
        return [g.name for g in search(session, CatalogQuery(q=q), viewer, with_facets=False).gears]

    assert found("favour") == ["acme/affinity"]
    gear.summary = "Learns preferred brands"
    session.commit()
    assert found("favour") == [] and found("brand") == ["acme/affinity"]
    session.delete(gear)
    session.commit()
    assert found("brand") == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_search_triggers_survive_every_migration(app):
    """A migration that rebuilds the gears table on SQLite would drop the FTS triggers."""
    with database(app).engine.connect() as conn:
        names = {row[0] for row in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"gears_fts_ai", "gears_fts_ad", "gears_fts_au"} <= names
