"""initial schema

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sidecar.store.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('intake',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('crm', sa.String(length=20), nullable=False),
    sa.Column('delivery_id', sa.String(length=100), nullable=False),
    sa.Column('crm_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crm', 'delivery_id')
    )
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_processed_at'), ['processed_at'], unique=False)

    op.create_table('leads',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('crm', sa.String(length=20), nullable=False),
    sa.Column('crm_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('company', sa.String(length=300), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('market', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('intent', sa.String(length=20), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('tier', sa.String(length=50), nullable=True),
    sa.Column('deal_size', sa.Float(), nullable=True),
    sa.Column('state', sa.String(length=40), nullable=False),
    sa.Column('crm_status', sa.String(length=100), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('created_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('state_entered_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_progress_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('crm_modified_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crm', 'crm_id')
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leads_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_state'), ['state'], unique=False)

    op.create_table('markets',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('tz', sa.String(length=64), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('policy_versions',
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('source_file', sa.String(length=500), nullable=False),
    sa.Column('activated_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('routing_pointers',
    sa.Column('team_id', sa.String(length=64), nullable=False),
    sa.Column('last_rep_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('team_id')
    )
    op.create_table('sync_cursors',
    sa.Column('crm', sa.String(length=20), nullable=False),
    sa.Column('stream', sa.String(length=40), nullable=False),
    sa.Column('cursor_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cursor_ids', sa.JSON(), nullable=False),
    sa.Column('last_poll_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('crm', 'stream')
    )
    op.create_table('teams',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('market', sa.String(length=64), nullable=False),
    sa.Column('manager_id', sa.String(length=64), nullable=True),
    sa.Column('slack_channel', sa.String(length=100), nullable=True),
    sa.Column('ops_queue_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=True),
    sa.Column('crm', sa.String(length=20), nullable=True),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('rule_id', sa.String(length=100), nullable=True),
    sa.Column('policy_version', sa.String(length=16), nullable=True),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('elapsed_business_s', sa.Float(), nullable=True),
    sa.Column('window_s', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('step_key', sa.String(length=200), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('step_key')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_lead_id'), ['lead_id'], unique=False)

    op.create_table('clocks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=40), nullable=False),
    sa.Column('rule_id', sa.String(length=100), nullable=False),
    sa.Column('policy_version', sa.String(length=16), nullable=False),
    sa.Column('market', sa.String(length=64), nullable=True),
    sa.Column('window_s', sa.Integer(), nullable=False),
    sa.Column('started_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consumed_s', sa.Float(), nullable=False),
    sa.Column('running_since', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('steps_fired', sa.Integer(), nullable=False),
    sa.Column('next_due_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('closed_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('close_reason', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.ForeignKeyConstraint(['policy_version'], ['policy_versions.version'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clocks_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_clocks_next_due_at'), ['next_due_at'], unique=False)

    op.create_table('lead_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('old', sa.String(length=300), nullable=True),
    sa.Column('new', sa.String(length=300), nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lead_id', 'dedupe_key')
    )
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_events_lead_id'), ['lead_id'], unique=False)

    op.create_table('reps',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('crm', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('seniority', sa.Integer(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('slack_user_id', sa.String(length=32), nullable=True),
    sa.Column('hours', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reps_email'), ['email'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=True),
    sa.Column('depends_on', sa.Integer(), nullable=True),
    sa.Column('port', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=200), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=True),
    sa.Column('created_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['audit_id'], ['audit.id'], ),
    sa.ForeignKeyConstraint(['depends_on'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_recipient'), ['recipient'], unique=False)

    op.create_table('rep_pto',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rep_id', sa.String(length=64), nullable=False),
    sa.Column('starts_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['rep_id'], ['reps.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rep_pto', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rep_pto_rep_id'), ['rep_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('rep_pto', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rep_pto_rep_id'))

    op.drop_table('rep_pto')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_recipient'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('reps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reps_email'))

    op.drop_table('reps')
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_events_lead_id'))

    op.drop_table('lead_events')
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clocks_next_due_at'))
        batch_op.drop_index(batch_op.f('ix_clocks_lead_id'))

    op.drop_table('clocks')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_lead_id'))
        batch_op.drop_index(batch_op.f('ix_audit_at'))

    op.drop_table('audit')
    op.drop_table('teams')
    op.drop_table('sync_cursors')
    op.drop_table('routing_pointers')
    op.drop_table('policy_versions')
    op.drop_table('markets')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_state'))
        batch_op.drop_index(batch_op.f('ix_leads_owner_id'))

    op.drop_table('leads')
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_processed_at'))

    op.drop_table('intake')
