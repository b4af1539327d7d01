"""gear_versions.precedence: one archive per semver precedence and gear (build metadata
ignored), enforced by a unique index; audit_entries.actor_system: the non-person actor
(operator CLI, demo seed, vetting) of an entry no user made.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 11:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(version: str) -> str:
    # The same rule as gears_sdk.versions.precedence_key, frozen here: a migration must
    # not change meaning when the code does. Strict semver: the text before '+' is canonical.
    return version.split('+', 1)[0]


def upgrade() -> None:
    # NOT NULL with a placeholder default is a plain ALTER TABLE on SQLite too (no table
    # rebuild, which would cascade-delete the rows that reference gear_versions).
    op.add_column('gear_versions', sa.Column('precedence', sa.String(length=100),
                                             nullable=False, server_default=''))
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, gear_id, version FROM gear_versions ORDER BY id")).all()
    taken: set[tuple[int, str]] = set()
    for row_id, gear_id, version in rows:
        key = _key(version)
        # An older duplicate (1.0.0 next to 1.0.0+b) keeps its full text as its key, so
        # existing rows stay readable; no new archive can join either of them.
        if (gear_id, key) in taken:
            key = version
        taken.add((gear_id, key))
        conn.execute(sa.text("UPDATE gear_versions SET precedence = :k WHERE id = :i"),
                     {"k": key, "i": row_id})
    if conn.dialect.name != 'sqlite':
        op.alter_column('gear_versions', 'precedence', server_default=None)
    op.create_index('uq_gear_versions_precedence', 'gear_versions',
                    ['gear_id', 'precedence'], unique=True)
    op.add_column('audit_entries', sa.Column('actor_system', sa.String(length=32),
                                             nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE audit_entries DROP COLUMN actor_system")
    op.drop_index('uq_gear_versions_precedence', table_name='gear_versions')
    op.execute("ALTER TABLE gear_versions DROP COLUMN precedence")
