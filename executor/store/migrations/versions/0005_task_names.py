"""Task id counters per workflow and base, for the ids of continuations' tasks; and how
often a worker died running each task, for the task's retry budget.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gnomon_task_names",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("base", sa.String(1024), primary_key=True),
        sa.Column("next", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("gnomon_tasks") as batch:
        batch.add_column(sa.Column("crashes", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gnomon_tasks") as batch:
        batch.drop_column("crashes")
    op.drop_table("gnomon_task_names")
