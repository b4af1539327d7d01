"""gears.listed: whether a gear has a public version, kept on every state change so
catalog searches filter on an index instead of scanning versions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on purpose, also on SQLite: batch mode would rebuild the
# table and lose the full-text triggers of 0005.


def upgrade() -> None:
    op.add_column('gears', sa.Column('listed', sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.execute(
        "UPDATE gears SET listed = EXISTS (SELECT 1 FROM gear_versions v "
        "WHERE v.gear_id = gears.id AND v.status = 'approved' "
        "AND v.yanked = false AND v.quarantined = false)")
    op.create_index('ix_gears_listed_installs', 'gears', ['listed', 'install_count'])


def downgrade() -> None:
    op.drop_index('ix_gears_listed_installs', table_name='gears')
    op.execute("ALTER TABLE gears DROP COLUMN listed")
