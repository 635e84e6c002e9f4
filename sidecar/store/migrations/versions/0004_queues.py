"""review queues and lead countries: the ops review and compliance queues as rows

Revision ID: 0004
Revises: 0003

`review_items` holds what a person has to look at (a lead stuck for 4x its window, a lead on
compliance hold) until someone resolves it; `leads.country` is the jurisdiction the compliance
pattern compares with the policy's licensed jurisdictions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sidecar.store.types import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_items',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('queue', sa.String(length=20), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('pattern', sa.String(length=30), nullable=False),
        sa.Column('rule_id', sa.String(length=100), nullable=True),
        sa.Column('policy_version', sa.String(length=16), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('opened_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolved_by', sa.String(length=100), nullable=True),
        sa.Column('resolution', sa.String(length=2000), nullable=True),
        sa.Column('last_surfaced_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_items_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_review_items_open', ['queue', 'resolved_at'], unique=False)
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('country', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('country')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_open')
        batch_op.drop_index(batch_op.f('ix_review_items_lead_id'))
    op.drop_table('review_items')
