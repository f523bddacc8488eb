"""Frozen records the store hands out; callers never see rows or tables."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from executor.status import TaskStatus, WorkflowStatus


@dataclass(frozen=True)
class WorkflowRecord:
    workflow_id: str
    name: str
    #: The status as a reader should see it: RUNNING whose owner is gone reads RESUMABLE.
    status: WorkflowStatus
    trigger: str
    user_metadata: dict[str, Any]
    output_task_id: str | None
    output_preview: str | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    owner: str | None
    lease_expires_at: float | None
    #: Set while the workflow is suspended in a long sleep.
    wake_at: float | None = None
    #: Whether it waits in the workflow queue (PENDING) for a running slot.
    queued: bool = False
    #: Seconds it may run (``run(..., timeout_s=)``) before it is stopped and FAILED.
    timeout_s: float | None = None
    #: The version of the code its graph was built from, if known.
    code_version: str | None = None
    #: The run it was forked from.
    forked_from: str | None = None
    #: When it should have succeeded by (a registered workflow's deadline).
    deadline_at: float | None = None

    def late(self, now: float) -> bool:
        """Whether it missed its deadline: not SUCCESSFUL by then (or still not)."""
        if self.deadline_at is None:
            return False
        if self.status == WorkflowStatus.SUCCESSFUL and self.ended_at is not None:
            return self.ended_at > self.deadline_at
        return now > self.deadline_at


@dataclass(frozen=True)
class TaskRecord:
    workflow_id: str
    task_id: str
    seq: int
    name: str
    parent_task_id: str | None
    upstream: list[str]
    status: TaskStatus
    attempts: int
    started_at: float | None
    ended_at: float | None
    error: str | None
    output_preview: str | None
    output_task_id: str | None
    user_metadata: dict[str, Any] = field(default_factory=dict)
    #: How often a worker died running it.
    crashes: int = 0
    #: The concurrency pool it runs in, if any.
    pool: str | None = None
    #: When a RETRYING task's next attempt starts (a sleep's wake time, for a sleep).
    wake_at: float | None = None
    #: A RETRYING task's next attempt, and how many its retry policy allows.
    next_attempt: int | None = None
    max_attempts: int | None = None
    #: Seconds it waited, in all, for a slot of its pool.
    queued_s: float | None = None
    #: The code version it ran with, where it differs from its workflow's.
    code_version: str | None = None


@dataclass(frozen=True)
class TaskAttempt:
    """An earlier attempt of a task, kept when a retry, a clear or a fork ran it again."""

    workflow_id: str
    task_id: str
    archived_at: float
    name: str
    status: TaskStatus
    attempts: int
    started_at: float | None
    ended_at: float | None
    error: str | None
    output_preview: str | None
    code_version: str | None


@dataclass(frozen=True)
class Rerun:
    """How a workflow runs again (``Store.rerun``): which tasks lose their checkpoints,
    and, with newer code, the graph it runs with now."""

    #: The new graph (its bytes, or their blob URL) and output task; None: the stored one.
    graph: bytes | None = None
    graph_blob: str | None = None
    output_task_id: str | None = None
    code_version: str | None = None
    #: The run's metadata with the params it runs with now; None: unchanged.
    user_metadata: dict[str, Any] | None = None
    #: Tasks to run again: their rows are kept as earlier attempts, their checkpoints go,
    #: and they are PENDING again.
    reset: tuple[str, ...] = ()
    #: Tasks to remove (kept as earlier attempts): gone from the new graph, or the tasks
    #: of a continuation whose task runs again.
    drop: tuple[str, ...] = ()
    #: Tasks whose continuation's output runs again: CONTINUED again, their continuation
    #: kept.
    reopen: tuple[str, ...] = ()
    #: Tasks of the new graph that the old one did not have.
    new_tasks: tuple[NewTask, ...] = ()


class Admission(str, Enum):
    """What ``Store.enter`` did with a workflow."""

    #: Its lease is taken and it may run now.
    RUNNING = "running"
    #: Its lease is taken and it waits in the queue for a running slot.
    QUEUED = "queued"
    #: A live owner holds it.
    TAKEN = "taken"


@dataclass(frozen=True)
class QueueLimits:
    """The workflow queue: at most ``max_running`` workflows run at once, and at most
    ``max_pending`` wait for a slot; -1 is no limit (Ray Workflows' convention)."""

    max_running: int = -1
    max_pending: int = -1

    @property
    def limited(self) -> bool:
        return self.max_running != -1


@dataclass(frozen=True)
class Rate:
    """A pool's rate limit: at most ``limit`` starts in any ``period_s`` seconds."""

    limit: int
    period_s: float

    def __str__(self) -> str:
        units = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
        unit = units.get(self.period_s)
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.period_s:g}s"


@dataclass(frozen=True)
class PoolRecord:
    """A concurrency pool: its limits, and its slots held and waited for now."""

    name: str
    #: At most this many of its tasks run at once; 0 pauses the pool.
    slots: int
    rate: Rate | None
    #: Slots held by live holders.
    used: int = 0
    #: Tasks waiting for a slot.
    queued: int = 0


#: How many task ids of each base a continuation needs -> the first index of each that
#: it may use (``Store.task_continued``).
ReserveIds = Callable[[dict[str, int]], dict[str, int]]
#: A continuation's checkpoint and task rows, built with the ids reserved for it.
Expand = Callable[[ReserveIds], tuple["Checkpoint", Sequence["NewTask"]]]


@dataclass(frozen=True)
class TaskFinish:
    """What recording a task's finish did (``Store.task_finished``)."""

    #: It also recorded the workflow's outcome: the value was the workflow's output.
    outcome: bool
    #: Its pool slot went back, and live waiters stand in that pool's line.
    waiting: bool = False
    #: Its pool slot passed to the task named to take it (``hand_to``).
    handed: bool = False


@dataclass(frozen=True)
class SlotWait:
    """Where a task waiting for a slot stands: its pool, and how many are ahead of it."""

    pool: str
    ahead: int


@dataclass(frozen=True)
class TaskLog:
    #: 1 for the first attempt that left output, and so on.
    attempt: int
    started_at: float
    text: str
    updated_at: float


@dataclass(frozen=True)
class EventRecord:
    """An event in a workflow's mailbox; ``consumed_by`` is the wait that took it."""

    event_id: int
    workflow_id: str
    event_key: str
    payload: Any
    created_at: float
    consumed_by: str | None
    consumed_at: float | None


@dataclass(frozen=True)
class NewTask:
    """A task row to insert when a workflow or a continuation is expanded."""

    task_id: str
    name: str
    upstream: list[str]
    user_metadata: dict[str, Any]
    parent_task_id: str | None = None
    #: The concurrency pool it will take a slot of.
    pool: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """Serialized bytes, or a blob-store URL when the bytes were too large for a row."""

    kind: str
    data: bytes | None
    blob: str | None
    size: int


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


# ------------------------------------------------------------------ JSON shapes
# One shape per record for every program that reads them: the REST API and ``gnomon
# ... --json`` print the same objects.


def iso(timestamp: float | datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, as ``scheduler.registry.format_logical_date`` writes
    logical dates (microseconds only when there are some); ``isoformat`` is the fast way
    there, which counts for a 2,000-task run's JSON."""
    if timestamp is None:
        return None
    if isinstance(timestamp, datetime):
        moment = timestamp.astimezone(timezone.utc)
    else:
        moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def workflow_json(record: WorkflowRecord) -> dict[str, Any]:
    """A run in a list."""
    return {
        "id": record.workflow_id,
        "name": record.name,
        "status": record.status.value,
        "trigger": record.trigger,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "ended_at": iso(record.ended_at),
        "deadline_at": iso(record.deadline_at),
        "late": record.late(time.time()),
        "code": record.code_version,
        "forked_from": record.forked_from,
    }


def workflow_detail_json(
    record: WorkflowRecord,
    tasks: Sequence[TaskRecord],
    forks: Sequence[str] = (),
    earlier: Sequence[TaskAttempt] = (),
) -> dict[str, Any]:
    """One run with its tasks, the runs forked from it, and its tasks' earlier attempts
    (from before a retry, a clear or a fork)."""
    return {
        **workflow_json(record),
        "metadata": record.user_metadata,
        "output_preview": record.output_preview,
        "error": record.error,
        "tasks": [task_json(task, record.code_version) for task in tasks],
        "forks": list(forks),
        "earlier_attempts": [attempt_json(attempt) for attempt in earlier],
    }


def task_json(task: TaskRecord, run_code: str | None = None) -> dict[str, Any]:
    """A task; ``run_code`` is the run's code version, which a task without one of its
    own ran with."""
    return {
        "task_id": task.task_id,
        "name": task.name,
        "status": task.status.value,
        "attempts": task.attempts,
        "code": task.code_version or run_code,
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
        "output_preview": task.output_preview,
        "error": task.error,
        "pool": task.pool,
        "queued_s": task.queued_s,
        "retry_at": iso(task.wake_at) if task.status == TaskStatus.RETRYING else None,
        "next_attempt": task.next_attempt if task.status == TaskStatus.RETRYING else None,
        "max_attempts": task.max_attempts if task.status == TaskStatus.RETRYING else None,
    }


def attempt_json(attempt: TaskAttempt) -> dict[str, Any]:
    """An earlier attempt of a task, from before a retry, a clear or a fork."""
    return {
        "task_id": attempt.task_id,
        "name": attempt.name,
        "status": attempt.status.value,
        "attempts": attempt.attempts,
        "code": attempt.code_version,
        "started_at": iso(attempt.started_at),
        "ended_at": iso(attempt.ended_at),
        "output_preview": attempt.output_preview,
        "error": attempt.error,
        "archived_at": iso(attempt.archived_at),
    }


def pool_json(record: PoolRecord) -> dict[str, Any]:
    """A pool, as the REST API and ``gnomon pool list --json`` show it."""
    rate = record.rate
    return {
        "name": record.name,
        "slots": record.slots,
        "rate": None if rate is None else {"limit": rate.limit, "period_s": rate.period_s},
        "rate_text": None if rate is None else str(rate),
        "used": record.used,
        "queued": record.queued,
    }


# ------------------------------------------------------------ alerts, backfills

#: Notification events: a run's outcomes, a task's retry, a missed deadline.
EVENTS = ("success", "failure", "retry", "deadline_missed")


def notifier_key(target: str) -> str:
    """The short key a notifier's deliveries are idempotent by."""
    return hashlib.sha256(target.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class NotifyRoute:
    """One event of a run, and where it goes: a notifier URL or ``callback:on_failure``."""

    event: str
    target: str

    @property
    def notifier(self) -> str:
        return notifier_key(self.target)


@dataclass(frozen=True)
class RunAlerts:
    """What a registered run is created with: where its events go, and its deadline."""

    routes: tuple[NotifyRoute, ...] = ()
    deadline_at: float | None = None


@dataclass(frozen=True)
class NotificationRecord:
    """One event for one notifier, in the outbox."""

    notification_id: int
    workflow_id: str
    name: str
    event: str
    #: The task of a retry; "" otherwise.
    subject: str
    occurrence: float
    notifier: str
    #: The notifier URL, secrets included: show ``mask_target(target)`` only.
    target: str
    status: str | None
    error: str | None
    #: ``pending``, ``delivered`` or ``failed``.
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    delivered_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class BackfillProgress:
    """A backfill's ticks by how far they got."""

    total: int = 0
    done: int = 0
    running: int = 0
    queued: int = 0
    failed: int = 0
    skipped: int = 0
    canceled: int = 0


@dataclass(frozen=True)
class BackfillRecord:
    backfill_id: str
    name: str
    #: ``running``, ``paused``, ``canceled`` or ``done``.
    state: str
    params: dict[str, Any]
    max_active: int | None
    rerun_failed: bool
    start_at: float
    end_at: float
    created_at: float
    ended_at: float | None
    progress: BackfillProgress = field(default_factory=BackfillProgress)


_SECRET_QUERY = re.compile(r"=[^&]*")


def mask_target(target: str) -> str:
    """A notifier as the UI and logs may show it: scheme, host and the first path segment;
    passwords, the rest of the path (Slack's webhook secret) and query values masked."""
    if target.startswith(("mailto:", "callback:")):
        return target
    try:
        parts = urlsplit(target)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    user = f"{parts.username}:***@" if parts.password else ("***@" if parts.username else "")
    segments = [segment for segment in parts.path.split("/") if segment]
    path = f"/{segments[0]}" if segments else ""
    if len(segments) > 1:
        path += "/***"
    query = "?" + _SECRET_QUERY.sub("=***", parts.query) if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{user}{host}{port}{path}{query}{fragment}"


def notification_json(record: NotificationRecord) -> dict[str, Any]:
    return {
        "id": record.notification_id,
        "workflow_id": record.workflow_id,
        "event": record.event,
        "task_id": record.subject or None,
        "notifier": mask_target(record.target),
        "state": record.state,
        "attempts": record.attempts,
        "created_at": iso(record.created_at),
        "next_attempt_at": iso(record.next_attempt_at) if record.state == "pending" else None,
        "delivered_at": iso(record.delivered_at),
        "last_error": record.last_error,
    }


def backfill_json(record: BackfillRecord) -> dict[str, Any]:
    progress = record.progress
    return {
        "id": record.backfill_id,
        "name": record.name,
        "state": record.state,
        "start": iso(record.start_at),
        "end": iso(record.end_at),
        "params": record.params,
        "max_active": record.max_active,
        "rerun_failed": record.rerun_failed,
        "created_at": iso(record.created_at),
        "ended_at": iso(record.ended_at),
        "progress": {
            "total": progress.total,
            "done": progress.done,
            "running": progress.running,
            "queued": progress.queued,
            "failed": progress.failed,
            "skipped": progress.skipped,
            "canceled": progress.canceled,
        },
    }
