"""high-value flag state, churn signals and holds, per-lead outcomes

Revision ID: 0005
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sidecar.store.types

revision = '0005'
down_revision = '0009'
branch_labels = None
depends_on = None

_TIME = sidecar.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('high_value_at', _TIME, nullable=True))
        batch_op.add_column(sa.Column('account_key', sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f('ix_leads_account_key'), ['account_key'], unique=False)
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_window_s', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('window_factor', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=40), nullable=True))
    op.create_table('signals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('signal_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=60), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=True),
    sa.Column('account_key', sa.String(length=300), nullable=True),
    sa.Column('occurred_at', _TIME, nullable=True),
    sa.Column('received_at', _TIME, nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['audit_id'], ['audit.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('signal_id')
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_lead_id'), ['lead_id'], unique=False)
    op.create_table('churn_holds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_key', sa.String(length=300), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sa.String(length=200), nullable=False),
    sa.Column('task_key', sa.String(length=200), nullable=False),
    sa.Column('started_at', _TIME, nullable=False),
    sa.Column('released_at', _TIME, nullable=True),
    sa.Column('released_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('churn_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_churn_holds_account_key'), ['account_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_churn_holds_released_at'), ['released_at'], unique=False)
    op.create_table('lead_outcomes',
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('crm', sa.String(length=20), nullable=False),
    sa.Column('crm_id', sa.String(length=64), nullable=False),
    sa.Column('market', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('intent', sa.String(length=20), nullable=True),
    sa.Column('arrived_at', _TIME, nullable=True),
    sa.Column('window_s', sa.Integer(), nullable=True),
    sa.Column('first_response_at', _TIME, nullable=True),
    sa.Column('first_response_s', sa.Float(), nullable=True),
    sa.Column('sla_met', sa.Boolean(), nullable=True),
    *[sa.Column(name, sa.Boolean(), nullable=False) for name in (
        'reminder_fired', 'manager_escalated', 'reassigned', 'contacted', 'qualified', 'disqualified',
        'booked', 'no_response', 'closed_lost_due_to_delay', 'recovered_after_escalation')],
    sa.Column('updated_at', _TIME, nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('lead_id')
    )


def downgrade() -> None:
    op.drop_table('lead_outcomes')
    with op.batch_alter_table('churn_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_churn_holds_released_at'))
        batch_op.drop_index(batch_op.f('ix_churn_holds_account_key'))
    op.drop_table('churn_holds')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_lead_id'))
    op.drop_table('signals')
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_column('paused_by')
        batch_op.drop_column('window_factor')
        batch_op.drop_column('base_window_s')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_account_key'))
        batch_op.drop_column('account_key')
        batch_op.drop_column('high_value_at')
