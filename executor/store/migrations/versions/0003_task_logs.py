"""Task logs: the bounded output of each attempt.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gnomon_task_logs",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("task_id", sa.String(1024), primary_key=True),
        sa.Column("attempt_started_at", sa.Float, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnomon_task_logs")
