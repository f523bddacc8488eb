"""Alerts and scheduling operations: notification routes and the outbox, run deadlines,
backfills.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.add_column(sa.Column("deadline_at", sa.Float, nullable=True))
    op.create_table(
        "gnomon_notify_routes",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("event", sa.String(32), primary_key=True),
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
    )
    op.create_table(
        "gnomon_outbox",
        sa.Column(
            "notification_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("occurrence", sa.Float, nullable=False),
        sa.Column("notifier", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claim_expires_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index(
        "ux_gnomon_outbox_event",
        "gnomon_outbox",
        ["workflow_id", "event", "subject", "occurrence", "notifier"],
        unique=True,
    )
    op.create_index("ix_gnomon_outbox_due", "gnomon_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "gnomon_backfills",
        sa.Column("backfill_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("max_active", sa.Integer, nullable=True),
        sa.Column("rerun_failed", sa.Boolean, nullable=False),
        sa.Column("start_at", sa.Float, nullable=False),
        sa.Column("end_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
    )
    op.create_index("ix_gnomon_backfills_name", "gnomon_backfills", ["name", "created_at"])
    op.create_table(
        "gnomon_backfill_ticks",
        sa.Column("backfill_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnomon_backfill_ticks")
    op.drop_index("ix_gnomon_backfills_name", "gnomon_backfills")
    op.drop_table("gnomon_backfills")
    op.drop_index("ix_gnomon_outbox_due", "gnomon_outbox")
    op.drop_index("ux_gnomon_outbox_event", "gnomon_outbox")
    op.drop_table("gnomon_outbox")
    op.drop_table("gnomon_notify_routes")
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.drop_column("deadline_at")
