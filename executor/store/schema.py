"""The store's tables (SQLAlchemy Core). Alembic migrations under ``migrations/`` create them.

Times are UNIX seconds as doubles: cheap to write from every worker, and
exactly what ``get_metadata()['stats']`` reports.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Ids are user-chosen strings; scheduled runs look like ``nightly@2026-11-25T03:00:00+00:00``.
ID = String(255)
#: Task ids of continuations nest their parent's id.
TASK_ID = String(1024)

workflows = Table(
    "gnomon_workflows",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False, default="manual"),
    Column("user_metadata", Text, nullable=False, default="{}"),
    Column("graph", LargeBinary, nullable=True),
    Column("graph_blob", Text, nullable=True),
    Column("output_task_id", TASK_ID, nullable=True),
    Column("output_preview", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("owner", String(255), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Index("ix_gnomon_workflows_created", "created_at", "workflow_id"),
    Index("ix_gnomon_workflows_status_created", "status", "created_at", "workflow_id"),
    Index("ix_gnomon_workflows_name_created", "name", "created_at", "workflow_id"),
)

tasks = Table(
    "gnomon_tasks",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("task_id", TASK_ID, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("name", String(255), nullable=False),
    Column("parent_task_id", TASK_ID, nullable=True),
    Column("upstream", Text, nullable=False, default="[]"),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("output_preview", Text, nullable=True),
    Column("output_task_id", TASK_ID, nullable=True),
    Column("user_metadata", Text, nullable=False, default="{}"),
)

checkpoints = Table(
    "gnomon_checkpoints",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("task_id", TASK_ID, primary_key=True),
    #: "value" (the task's output) or "continuation" (the DAG it returned).
    Column("kind", String(16), nullable=False),
    Column("data", LargeBinary, nullable=True),
    Column("blob", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
)
