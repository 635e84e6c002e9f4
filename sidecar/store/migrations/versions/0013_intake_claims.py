"""intake claims: several sidecars drain one intake, each webhook id applied once

Revision ID: 0013
Revises: 0005

A drainer claims a batch of intake rows (FOR UPDATE SKIP LOCKED on PostgreSQL) by writing its
`claim_token` and a lease (`claimed_until`), reads the CRM outside any transaction, then applies
only the rows still carrying its token. A drainer that died leaves its rows to the next one once
the lease has run out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sidecar.store.types

revision = '0013'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sidecar.store.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claim_token')
