"""poll result: the last poll's outcome per CRM, for `sidecar status` (another process than the poller)

Revision ID: 0009
Revises: 0007

`last_attempt_at` is when the last poll ran, `last_error` why it failed (plain words, no secrets;
NULL when it succeeded) and `failing_since` when the current streak of failures began.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sidecar.store.types

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_attempt_at', sidecar.store.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('failing_since', sidecar.store.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.drop_column('failing_since')
        batch_op.drop_column('last_error')
        batch_op.drop_column('last_attempt_at')
