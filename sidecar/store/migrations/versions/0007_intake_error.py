"""intake error: a webhook-announced id the CRM refused to read is set aside with the reason

Revision ID: 0007
Revises: 0004

An intake row with `processed_at` set and an `error` was dead-lettered: the reader failed on that
id alone, so it no longer blocks the ids behind it; `sidecar status` lists it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.drop_column('error')
