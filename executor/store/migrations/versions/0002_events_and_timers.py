"""The event mailbox, and wake times for sleeping tasks and suspended workflows.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gnomon_tasks", sa.Column("wake_at", sa.Float, nullable=True))
    op.add_column("gnomon_workflows", sa.Column("wake_at", sa.Float, nullable=True))
    op.create_index("ix_gnomon_workflows_wake", "gnomon_workflows", ["wake_at"])
    op.create_table(
        "gnomon_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("consumed_by", sa.String(1024), nullable=True),
        sa.Column("consumed_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_gnomon_events_mailbox", "gnomon_events", ["workflow_id", "event_key", "consumed_by"]
    )


def downgrade() -> None:
    op.drop_table("gnomon_events")
    op.drop_index("ix_gnomon_workflows_wake", "gnomon_workflows")
    op.drop_column("gnomon_workflows", "wake_at")
    op.drop_column("gnomon_tasks", "wake_at")
