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
    #: A workflow suspended in a long sleep: when the scheduler should resume it.
    Column("wake_at", Float, nullable=True),
    #: A workflow waiting in the workflow queue (``workflow.init(max_running_workflows=)``):
    #: its place in line. NULL when it is not queued.
    Column("queue_seq", BigInteger, nullable=True),
    Index("ix_gnomon_workflows_wake", "wake_at"),
    Index("ix_gnomon_workflows_queue", "queue_seq"),
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
    #: A sleep's wake time, recorded once so a resumed sleep waits only what is left.
    Column("wake_at", Float, nullable=True),
    #: How often a worker died running the task: those attempts count against the
    #: task's ``max_retries`` as its failed ones do.
    Column("crashes", Integer, nullable=False, default=0, server_default="0"),
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

#: The mailbox: events sent to a workflow, consumed once each by a waiting task.
events = Table(
    "gnomon_events",
    metadata,
    Column(
        "event_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("workflow_id", ID, nullable=False),
    Column("event_key", String(255), nullable=False),
    #: JSON text; payloads are never pickled.
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("consumed_by", TASK_ID, nullable=True),
    Column("consumed_at", Float, nullable=True),
    Index("ix_gnomon_events_mailbox", "workflow_id", "event_key", "consumed_by"),
)

#: Each attempt's captured output, keyed by when the attempt started (no read needed to
#: number attempts; readers number them in order).
task_logs = Table(
    "gnomon_task_logs",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("task_id", TASK_ID, primary_key=True),
    Column("attempt_started_at", Float, primary_key=True),
    Column("text", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: Settings shared by every process on the database, such as the workflow queue's limits.
settings = Table(
    "gnomon_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: How many task ids of each base a workflow has handed out (Ray Workflows' counters):
#: a continuation's tasks are numbered on from them.
task_names = Table(
    "gnomon_task_names",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("base", TASK_ID, primary_key=True),
    Column("next", BigInteger, nullable=False),
    #: The size of the last reservation (what an upsert that finds the row adds).
    Column("reserved", BigInteger, nullable=False),
)
