"""engine_outbox: the lifecycle outbox engine nodes claim installation changes from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'engine_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.Enum('installed', 'changed', 'uninstalled', name='eventkind',
                                  native_enum=False, length=16), nullable=False),
        sa.Column('installation_id', sa.String(length=32), nullable=False),
        sa.Column('workspace', sa.String(length=100), nullable=False),
        sa.Column('gear', sa.String(length=214), nullable=False),
        sa.Column('version', sa.String(length=100), nullable=False),
        sa.Column('config', sa.JSON(), nullable=True),
        sa.Column('secrets_encrypted', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claimed_by', sa.String(length=200), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_outbox')),
    )
    op.create_index(op.f('ix_engine_outbox_installation_id'), 'engine_outbox',
                    ['installation_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_engine_outbox_installation_id'), table_name='engine_outbox')
    op.drop_table('engine_outbox')
