"""auth_failures: failed authentications counted in the database, shared by every
process and replica.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'auth_failures',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_failures')),
    )
    op.create_index(op.f('ix_auth_failures_window_start'), 'auth_failures', ['window_start'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_auth_failures_window_start'), table_name='auth_failures')
    op.drop_table('auth_failures')
