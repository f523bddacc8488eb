"""Operator recovery: earlier task attempts, code versions, forks.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.add_column(sa.Column("code_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("forked_from", sa.String(255), nullable=True))
        batch.create_index("ix_gnomon_workflows_forked_from", ["forked_from"])
    with op.batch_alter_table("gnomon_tasks") as batch:
        batch.add_column(sa.Column("code_version", sa.String(64), nullable=True))
    op.create_table(
        "gnomon_task_attempts",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("task_id", sa.String(1024), primary_key=True),
        sa.Column("archived_at", sa.Float, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("output_preview", sa.Text, nullable=True),
        sa.Column("code_version", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gnomon_task_attempts")
    with op.batch_alter_table("gnomon_tasks") as batch:
        batch.drop_column("code_version")
    with op.batch_alter_table("gnomon_workflows") as batch:
        batch.drop_index("ix_gnomon_workflows_forked_from")
        batch.drop_column("forked_from")
        batch.drop_column("code_version")
