"""first-response tasks and intent tiers: which rule chose a lead's intent, which ladder a clock follows

Revision ID: 0003
Revises: 0002

`leads.intent_rule` names the intent rule (or "crm" / "default") behind `leads.intent`, so every
audit row of the lead can say which tier applied and why. `clocks.ladder` is the intent tier whose
own ladder a clock follows; NULL (every clock before this migration) means the main ladder, which
is what those clocks were following.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('intent_rule', sa.String(length=100), nullable=True))
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ladder', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_column('ladder')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('intent_rule')
