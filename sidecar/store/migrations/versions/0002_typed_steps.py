"""typed steps: what an audited decision did, in columns code may branch on

Revision ID: 0002
Revises: 0001

`kind` stays the admin's label; `pattern`, `action` and `to_owner` say what happened. Rows written
before this migration keep NULLs: they were decided by the SLA ladder or assignment, and only
reassignments (kind `sla_breach_auto_reassign` in every policy shipped so far) matter to revert,
so those are back-filled from their details.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pattern', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('action', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('to_owner', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_action'), ['action'], unique=False)
    audit = sa.table('audit', sa.column('id', sa.Integer), sa.column('kind', sa.String),
                     sa.column('details', sa.JSON), sa.column('pattern', sa.String),
                     sa.column('action', sa.String), sa.column('to_owner', sa.String))
    bind = op.get_bind()
    rows = bind.execute(sa.select(audit.c.id, audit.c.kind, audit.c.details).where(
        audit.c.kind.in_(('sla_breach_auto_reassign', 'reassignment_reverted')))).all()
    for row_id, kind, details in rows:
        to_owner = (details or {}).get('to_owner')
        if kind == 'reassignment_reverted':
            values = {'pattern': 'revert', 'action': 'revert', 'to_owner': to_owner}
        elif to_owner:
            values = {'pattern': 'sla', 'action': 'reassign', 'to_owner': to_owner}
        else:
            continue
        bind.execute(audit.update().where(audit.c.id == row_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_action'))
        batch_op.drop_column('to_owner')
        batch_op.drop_column('action')
        batch_op.drop_column('pattern')
