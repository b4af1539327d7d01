"""Workspace installations: which gear version runs in which workspace.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'installations',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('workspace_id', sa.Integer(), nullable=False),
        sa.Column('gear_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.String(length=100), nullable=False),
        sa.Column('constraint', sa.String(length=200), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('secrets_encrypted', sa.Text(), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('disabled_reason', sa.Text(), nullable=True),
        sa.Column('consented_capabilities', sa.JSON(), nullable=False),
        sa.Column('installed_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['gear_id'], ['gears.id'],
                                name=op.f('fk_installations_gear_id_gears'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['installed_by_id'], ['users.id'],
                                name=op.f('fk_installations_installed_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                                name=op.f('fk_installations_workspace_id_workspaces'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_installations')),
        sa.UniqueConstraint('workspace_id', 'gear_id', name='uq_installations_workspace_gear'),
    )
    op.create_index('ix_installations_gear_id', 'installations', ['gear_id'])
    op.create_index('ix_installations_workspace_id', 'installations', ['workspace_id'])


def downgrade() -> None:
    op.drop_index('ix_installations_workspace_id', table_name='installations')
    op.drop_index('ix_installations_gear_id', table_name='installations')
    op.drop_table('installations')
