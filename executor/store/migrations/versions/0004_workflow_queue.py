"""The workflow queue: a queued workflow's place in line, and shared settings.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.add_column(sa.Column("queue_seq", sa.BigInteger, nullable=True))
        batch.create_index("ix_gnomon_workflows_queue", ["queue_seq"])
    op.create_table(
        "gnomon_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnomon_settings")
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.drop_index("ix_gnomon_workflows_queue")
        batch.drop_column("queue_seq")
