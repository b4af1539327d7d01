"""engine_sync_runs.heartbeat_at: when a running sync last made progress, so a sync its
engine node stopped running (killed mid-way) no longer blocks the connector's next sync.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('engine_sync_runs', sa.Column('heartbeat_at', sa.DateTime(timezone=True),
                                                nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE engine_sync_runs DROP COLUMN heartbeat_at")
