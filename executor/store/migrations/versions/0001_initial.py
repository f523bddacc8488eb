"""Workflows, tasks and checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(255)
TASK_ID = sa.String(1024)


def upgrade() -> None:
    op.create_table(
        "gnomon_workflows",
        sa.Column("workflow_id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("user_metadata", sa.Text, nullable=False),
        sa.Column("graph", sa.LargeBinary, nullable=True),
        sa.Column("graph_blob", sa.Text, nullable=True),
        sa.Column("output_task_id", TASK_ID, nullable=True),
        sa.Column("output_preview", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_gnomon_workflows_created", "gnomon_workflows", ["created_at", "workflow_id"]
    )
    op.create_index(
        "ix_gnomon_workflows_status_created",
        "gnomon_workflows",
        ["status", "created_at", "workflow_id"],
    )
    op.create_index(
        "ix_gnomon_workflows_name_created",
        "gnomon_workflows",
        ["name", "created_at", "workflow_id"],
    )
    op.create_table(
        "gnomon_tasks",
        sa.Column("workflow_id", ID, primary_key=True),
        sa.Column("task_id", TASK_ID, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("parent_task_id", TASK_ID, nullable=True),
        sa.Column("upstream", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("output_preview", sa.Text, nullable=True),
        sa.Column("output_task_id", TASK_ID, nullable=True),
        sa.Column("user_metadata", sa.Text, nullable=False),
    )
    op.create_table(
        "gnomon_checkpoints",
        sa.Column("workflow_id", ID, primary_key=True),
        sa.Column("task_id", TASK_ID, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("blob", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnomon_checkpoints")
    op.drop_table("gnomon_tasks")
    op.drop_table("gnomon_workflows")
