"""Engine: profiles, events, catalog items, segments, campaigns, connector cursors,
sync schedules and runs, installation state, and the decision log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('engine_campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('placement', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('experiences', sa.JSON(), nullable=False),
    sa.Column('fallback', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_campaigns_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_campaigns')),
    sa.UniqueConstraint('workspace_id', 'name', name='uq_engine_campaigns_workspace_name')
    )
    op.create_index('ix_engine_campaigns_placement', 'engine_campaigns', ['workspace_id', 'placement'], unique=False)
    op.create_table('engine_catalog_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('price', sa.Float(), nullable=True),
    sa.Column('url', sa.String(length=2000), nullable=True),
    sa.Column('image_url', sa.String(length=2000), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_catalog_items_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_catalog_items')),
    sa.UniqueConstraint('workspace_id', 'item_id', name='uq_engine_catalog_items_workspace_item')
    )
    op.create_index('ix_engine_catalog_items_category', 'engine_catalog_items', ['workspace_id', 'category'], unique=False)
    op.create_table('engine_connector_cursors',
    sa.Column('installation_id', sa.String(length=32), nullable=False),
    sa.Column('stream', sa.String(length=100), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('cursor', sa.JSON(), nullable=True),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_connector_cursors_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('installation_id', 'stream', name=op.f('pk_engine_connector_cursors'))
    )
    op.create_index(op.f('ix_engine_connector_cursors_workspace_id'), 'engine_connector_cursors', ['workspace_id'], unique=False)
    op.create_table('engine_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('placement', sa.String(length=64), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=True),
    sa.Column('experience', sa.String(length=64), nullable=True),
    sa.Column('fallback', sa.Boolean(), nullable=False),
    sa.Column('gears', sa.JSON(), nullable=False),
    sa.Column('took_ms', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_decisions_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_decisions'))
    )
    op.create_index('ix_engine_decisions_workspace_at', 'engine_decisions', ['workspace_id', 'at'], unique=False)
    op.create_table('engine_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_events')),
    sa.UniqueConstraint('workspace_id', 'event_id', name='uq_engine_events_workspace_event')
    )
    op.create_index('ix_engine_events_user_time', 'engine_events', ['workspace_id', 'user_id', 'timestamp'], unique=False)
    op.create_table('engine_installation_state',
    sa.Column('installation_id', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_installation_state_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('installation_id', name=op.f('pk_engine_installation_state'))
    )
    op.create_index(op.f('ix_engine_installation_state_workspace_id'), 'engine_installation_state', ['workspace_id'], unique=False)
    op.create_table('engine_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('traits', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_profiles_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_profiles')),
    sa.UniqueConstraint('workspace_id', 'user_id', name='uq_engine_profiles_workspace_user')
    )
    op.create_index(op.f('ix_engine_profiles_workspace_id'), 'engine_profiles', ['workspace_id'], unique=False)
    op.create_table('engine_segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('rule', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_segments_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_segments')),
    sa.UniqueConstraint('workspace_id', 'name', name='uq_engine_segments_workspace_name')
    )
    op.create_index(op.f('ix_engine_segments_workspace_id'), 'engine_segments', ['workspace_id'], unique=False)
    op.create_table('engine_sync_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('installation_id', sa.String(length=32), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', name='syncstatus', native_enum=False, length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_sync_runs_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engine_sync_runs'))
    )
    op.create_index('ix_engine_sync_runs_installation', 'engine_sync_runs', ['installation_id', 'started_at'], unique=False)
    op.create_index(op.f('ix_engine_sync_runs_workspace_id'), 'engine_sync_runs', ['workspace_id'], unique=False)
    op.create_table('engine_sync_schedules',
    sa.Column('installation_id', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('interval_minutes', sa.Integer(), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_engine_sync_schedules_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('installation_id', name=op.f('pk_engine_sync_schedules'))
    )
    op.create_index(op.f('ix_engine_sync_schedules_next_run_at'), 'engine_sync_schedules', ['next_run_at'], unique=False)
    op.create_index(op.f('ix_engine_sync_schedules_workspace_id'), 'engine_sync_schedules', ['workspace_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_engine_sync_schedules_workspace_id'), table_name='engine_sync_schedules')
    op.drop_index(op.f('ix_engine_sync_schedules_next_run_at'), table_name='engine_sync_schedules')
    op.drop_table('engine_sync_schedules')
    op.drop_index(op.f('ix_engine_sync_runs_workspace_id'), table_name='engine_sync_runs')
    op.drop_index('ix_engine_sync_runs_installation', table_name='engine_sync_runs')
    op.drop_table('engine_sync_runs')
    op.drop_index(op.f('ix_engine_segments_workspace_id'), table_name='engine_segments')
    op.drop_table('engine_segments')
    op.drop_index(op.f('ix_engine_profiles_workspace_id'), table_name='engine_profiles')
    op.drop_table('engine_profiles')
    op.drop_index(op.f('ix_engine_installation_state_workspace_id'), table_name='engine_installation_state')
    op.drop_table('engine_installation_state')
    op.drop_index('ix_engine_events_user_time', table_name='engine_events')
    op.drop_table('engine_events')
    op.drop_index('ix_engine_decisions_workspace_at', table_name='engine_decisions')
    op.drop_table('engine_decisions')
    op.drop_index(op.f('ix_engine_connector_cursors_workspace_id'), table_name='engine_connector_cursors')
    op.drop_table('engine_connector_cursors')
    op.drop_index('ix_engine_catalog_items_category', table_name='engine_catalog_items')
    op.drop_table('engine_catalog_items')
    op.drop_index('ix_engine_campaigns_placement', table_name='engine_campaigns')
    op.drop_table('engine_campaigns')
