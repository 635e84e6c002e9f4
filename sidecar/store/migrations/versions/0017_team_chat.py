"""per-team chat system: Slack or Microsoft Teams (with the env var holding its channel workflow URL)

Revision ID: 0017
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        # NULL reads as "slack": every team applied before this revision stays on Slack.
        batch_op.add_column(sa.Column('chat', sa.String(length=10), nullable=True))
        # The NAME of an environment variable, never the URL: workflow URLs carry a signature.
        batch_op.add_column(sa.Column('teams_workflow_env', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('teams_workflow_env')
        batch_op.drop_column('chat')
