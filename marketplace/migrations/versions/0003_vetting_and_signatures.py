"""Vetting jobs and reports; registry signatures of approved versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'vetting_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.Enum('queued', 'running', 'done', 'error', name='jobstate',
                                   native_enum=False, length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_by', sa.String(length=100), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['version_id'], ['gear_versions.id'],
                                name=op.f('fk_vetting_jobs_version_id_gear_versions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vetting_jobs')),
    )
    op.create_index('ix_vetting_jobs_state_created', 'vetting_jobs', ['state', 'created_at'])
    op.create_index(op.f('ix_vetting_jobs_version_id'), 'vetting_jobs', ['version_id'])
    op.create_table(
        'vetting_reports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.Enum('queued', 'running', 'done', 'error', name='jobstate',
                                   native_enum=False, length=16), nullable=False),
        sa.Column('findings', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['gear_versions.id'],
                                name=op.f('fk_vetting_reports_version_id_gear_versions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vetting_reports')),
        sa.UniqueConstraint('version_id', name=op.f('uq_vetting_reports_version_id')),
    )
    op.create_table(
        'version_signatures',
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.String(length=16), nullable=False),
        sa.Column('algorithm', sa.String(length=16), nullable=False),
        sa.Column('signature', sa.Text(), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['gear_versions.id'],
                                name=op.f('fk_version_signatures_version_id_gear_versions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('version_id', name=op.f('pk_version_signatures')),
    )


def downgrade() -> None:
    op.drop_table('version_signatures')
    op.drop_table('vetting_reports')
    op.drop_index(op.f('ix_vetting_jobs_version_id'), table_name='vetting_jobs')
    op.drop_index('ix_vetting_jobs_state_created', table_name='vetting_jobs')
    op.drop_table('vetting_jobs')
