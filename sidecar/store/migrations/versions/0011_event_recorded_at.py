"""when each lead event was read from the CRM (lead_events.recorded_at), for `sidecar simulate`

Revision ID: 0011
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sidecar.store.types

revision = '0011'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_at', sidecar.store.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_column('recorded_at')
