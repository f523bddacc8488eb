"""The store's tables (SQLAlchemy Core). Alembic migrations under ``migrations/`` create them.

Times are UNIX seconds as doubles: cheap to write from every worker, and
exactly what ``get_metadata()['stats']`` reports.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    #: The version of the code its graph was built from (see ``workflow.init``).
    Column("code_version", String(64), nullable=True),
    #: The run this one was forked from (``workflow.fork``).
    Column("forked_from", ID, nullable=True),
    #: When a registered run should have succeeded by (``scheduler.register(deadline=)``).
    Column("deadline_at", Float, nullable=True),
    #: Seconds the run may take (``run(..., timeout_s=)``), counted from its start.
    Column("timeout_s", Float, nullable=True),
    Index("ix_gnomon_workflows_wake", "wake_at"),
    Index("ix_gnomon_workflows_queue", "queue_seq"),
    Index("ix_gnomon_workflows_forked_from", "forked_from"),
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
    #: The concurrency pool it runs in (``workflow.options(pool=)``).
    Column("pool", String(100), nullable=True),
    #: A RETRYING task's next attempt and its policy's ``max_attempts``; its ``wake_at``
    #: is when that attempt starts.
    Column("next_attempt", Integer, nullable=True),
    Column("max_attempts", Integer, nullable=True),
    #: Seconds it waited, in all, for a slot of its pool.
    Column("queued_s", Float, nullable=True),
    #: The code version it ran with, when it differs from its workflow's (a task kept
    #: across a retry with newer code).
    Column("code_version", String(64), nullable=True),
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

#: Earlier attempts of tasks, kept when a retry, a clear or a fork ran them again: the
#: row as it was, with the output preview (never the checkpoint).
task_attempts = Table(
    "gnomon_task_attempts",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("task_id", TASK_ID, primary_key=True),
    Column("archived_at", Float, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("output_preview", Text, nullable=True),
    Column("code_version", String(64), nullable=True),
)

#: Where a registered run's notifications go, written with the run: one row per event
#: (``success``, ``failure``, ``retry``, ``deadline_missed``) and notifier. An outcome
#: copies its event's rows into the outbox in the outcome's own transaction.
notify_routes = Table(
    "gnomon_notify_routes",
    metadata,
    Column("workflow_id", ID, primary_key=True),
    Column("event", String(32), primary_key=True),
    #: A short digest of ``target``: the key deliveries are idempotent by.
    Column("notifier", String(64), primary_key=True),
    #: The notifier URL (secrets and all: shown masked only), or ``callback:on_failure``.
    Column("target", Text, nullable=False),
)

#: Notifications to deliver: one row per (run, event, occurrence, notifier), retried
#: with backoff until delivered or given up.
outbox = Table(
    "gnomon_outbox",
    metadata,
    Column(
        "notification_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("workflow_id", ID, nullable=False),
    Column("name", String(255), nullable=False),
    Column("event", String(32), nullable=False),
    #: The task of a ``retry`` event; "" for the run's own events.
    Column("subject", TASK_ID, nullable=False),
    #: Which occurrence of the event: the run's start for an outcome (a resumed run that
    #: fails again notifies again), the attempt's start for a retry, the deadline.
    Column("occurrence", Float, nullable=False),
    Column("notifier", String(64), nullable=False),
    Column("target", Text, nullable=False),
    #: The run's status and error when the event happened.
    Column("status", String(16), nullable=True),
    Column("error", Text, nullable=True),
    #: ``pending``, ``delivered`` or ``failed`` (given up after its retries).
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(255), nullable=True),
    Column("claim_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Index(
        "ux_gnomon_outbox_event",
        "workflow_id",
        "event",
        "subject",
        "occurrence",
        "notifier",
        unique=True,
    ),
    Index("ix_gnomon_outbox_due", "state", "next_attempt_at"),
)

#: Backfills: a schedule's ticks over a range of dates, run as an operation of its own.
backfills = Table(
    "gnomon_backfills",
    metadata,
    Column("backfill_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    #: ``running``, ``paused``, ``canceled`` or ``done``.
    Column("state", String(16), nullable=False),
    Column("params", Text, nullable=False),
    #: Its own limit of active runs; NULL: the schedule's ``max_active_runs``.
    Column("max_active", Integer, nullable=True),
    Column("rerun_failed", Boolean, nullable=False),
    Column("start_at", Float, nullable=False),
    Column("end_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    #: The scheduler driving it (a lease, as a workflow's).
    Column("owner", String(255), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Index("ix_gnomon_backfills_name", "name", "created_at"),
)

#: A backfill's ticks, in the order they start.
backfill_ticks = Table(
    "gnomon_backfill_ticks",
    metadata,
    Column("backfill_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("workflow_id", ID, nullable=False),
    #: ``queued`` (to create), ``rerun`` (to resume: it failed before), ``started``,
    #: ``skipped`` (a run existed).
    Column("state", String(16), nullable=False),
)

#: Concurrency pools: at most ``slots`` of a pool's tasks run at once, across every
#: workflow and process on the database, and (with a rate) at most ``rate_limit`` start
#: in any ``rate_period`` seconds.
pools = Table(
    "gnomon_pools",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("slots", Integer, nullable=False),
    #: How many ``held`` rows it has, kept with them: a free slot is taken in one
    #: statement (``used < slots``). Rows whose holder died still count until a
    #: transaction that finds the pool full drops them and counts again.
    Column("used", Integer, nullable=False, default=0, server_default="0"),
    Column("rate_limit", Integer, nullable=True),
    Column("rate_period", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

#: A pool's slots, held and waited for: one row per (pool, task). A ``held`` row is a
#: lease its holder renews; a ``queued`` row waits in line, highest ``priority`` first,
#: then lowest ``seq``, and is granted by the ``owner`` (a workflow manager) waiting for it.
pool_slots = Table(
    "gnomon_pool_slots",
    metadata,
    Column("pool", String(100), primary_key=True),
    Column("workflow_id", ID, primary_key=True),
    Column("task_id", TASK_ID, primary_key=True),
    Column("state", String(8), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("owner", String(255), nullable=False),
    Column("lease_expires_at", Float, nullable=False),
    Column("queued_at", Float, nullable=True),
    Index("ix_gnomon_pool_slots_line", "pool", "state", "priority", "seq"),
    Index("ix_gnomon_pool_slots_workflow", "workflow_id"),
    Index("ix_gnomon_pool_slots_owner", "owner"),
)

#: Recent starts of rate-limited pools (the sliding window), dropped as they age out. A
#: slot granted to a waiting task counts from the grant, and from its actual start once
#: it starts.
pool_starts = Table(
    "gnomon_pool_starts",
    metadata,
    Column(
        "start_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("pool", String(100), nullable=False),
    Column("workflow_id", ID, nullable=False),
    Column("task_id", TASK_ID, nullable=False),
    Column("started_at", Float, nullable=False),
    Index("ix_gnomon_pool_starts", "pool", "started_at"),
)

#: Counts that only grow, for Prometheus: task timeouts, task retries.
counters = Table(
    "gnomon_counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
