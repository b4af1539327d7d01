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
    from marketplace.registry.search import CatalogQuery, search
    from marketplace.registry.viewer import Viewer

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


def test_precedence_migration_keeps_existing_duplicates_and_closes_the_door(app):
    """A registry that accepted 1.0.0 and 1.0.0+b before 0007 keeps both rows readable;
    afterwards no third archive of that precedence gets in, on either database."""
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from marketplace.db import alembic_config

    command.downgrade(alembic_config(app), "0006")
    engine = database(app).engine
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email, role, is_active, created_at) VALUES "
                          "(1, 'dev@example.org', 'developer', true, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO publishers (id, name, verified, created_at) VALUES "
                          "(1, 'acme', false, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO gears (id, publisher_id, name, kind, title, summary, "
                          "categories, install_count, created_at, updated_at) "
                          "VALUES (1, 1, 'acme/hello', 'template', 'H', 'S', '[]', "
                          "0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        for n, version in enumerate(("1.0.0", "1.0.0+b", "1.1.0+x"), 1):
            conn.execute(text(
                "INSERT INTO gear_versions (id, gear_id, version, sha256, size, manifest, "
                "status, yanked, quarantined, created_at) VALUES (:i, 1, :v, :s, 1, '{}', "
                "'pending', false, false, CURRENT_TIMESTAMP)"),
                {"i": n, "v": version, "s": f"{n:064x}"})
    upgrade(app)
    with engine.begin() as conn:
        rows = dict(conn.execute(text("SELECT version, precedence FROM gear_versions")).all())
    assert rows == {"1.0.0": "1.0.0", "1.0.0+b": "1.0.0+b", "1.1.0+x": "1.1.0"}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO gear_versions (gear_id, version, precedence, sha256, size, manifest, "
            "status, yanked, quarantined, created_at) VALUES (1, '1.1.0', '1.1.0', :s, 1, "
            "'{}', 'pending', false, false, CURRENT_TIMESTAMP)"), {"s": "f" * 64})
