"""Execution controls: run timeouts, task retry state and pools, concurrency pools with
their slots and recent starts, and counters.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.add_column(sa.Column("timeout_s", sa.Float, nullable=True))
    with op.batch_alter_table("gnomon_tasks") as batch:
        batch.add_column(sa.Column("pool", sa.String(100), nullable=True))
        batch.add_column(sa.Column("next_attempt", sa.Integer, nullable=True))
        batch.add_column(sa.Column("max_attempts", sa.Integer, nullable=True))
        batch.add_column(sa.Column("queued_s", sa.Float, nullable=True))
    op.create_table(
        "gnomon_pools",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rate_limit", sa.Integer, nullable=True),
        sa.Column("rate_period", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "gnomon_pool_slots",
        sa.Column("pool", sa.String(100), primary_key=True),
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("task_id", sa.String(1024), primary_key=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("lease_expires_at", sa.Float, nullable=False),
        sa.Column("queued_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_gnomon_pool_slots_line", "gnomon_pool_slots", ["pool", "state", "priority", "seq"]
    )
    op.create_index("ix_gnomon_pool_slots_workflow", "gnomon_pool_slots", ["workflow_id"])
    op.create_index("ix_gnomon_pool_slots_owner", "gnomon_pool_slots", ["owner"])
    op.create_table(
        "gnomon_pool_starts",
        sa.Column(
            "start_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("pool", sa.String(100), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("task_id", sa.String(1024), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_index("ix_gnomon_pool_starts", "gnomon_pool_starts", ["pool", "started_at"])
    op.create_table(
        "gnomon_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnomon_counters")
    op.drop_table("gnomon_pool_starts")
    op.drop_table("gnomon_pool_slots")
    op.drop_table("gnomon_pools")
    with op.batch_alter_table("gnomon_tasks") as batch:
        for column in ("queued_s", "max_attempts", "next_attempt", "pool"):
            batch.drop_column(column)
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.drop_column("timeout_s")
