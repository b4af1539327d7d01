"""installation_health: every installation's health in one row shared by every process
and engine node (calls, errors by code, latency histogram, last error, recent logs, why
it is not running).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 14:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'installation_health',
        sa.Column('installation_id', sa.String(length=32), nullable=False),
        sa.Column('calls', sa.BigInteger(), nullable=False),
        sa.Column('errors', sa.BigInteger(), nullable=False),
        sa.Column('timeouts', sa.BigInteger(), nullable=False),
        sa.Column('restarts', sa.BigInteger(), nullable=False),
        sa.Column('busy', sa.BigInteger(), nullable=False),
        sa.Column('failures', sa.JSON(), nullable=False),
        sa.Column('latency_buckets', sa.JSON(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('logs', sa.JSON(), nullable=False),
        sa.Column('not_running_code', sa.String(length=40), nullable=True),
        sa.Column('not_running_reason', sa.Text(), nullable=True),
        sa.Column('not_running_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_call_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['installation_id'], ['installations.id'],
                                name=op.f('fk_installation_health_installation_id_installations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('installation_id', name=op.f('pk_installation_health')),
    )


def downgrade() -> None:
    op.drop_table('installation_health')
