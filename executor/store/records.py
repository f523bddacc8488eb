"""Frozen records the store hands out; callers never see rows or tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

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
    }


def workflow_detail_json(record: WorkflowRecord, tasks: Sequence[TaskRecord]) -> dict[str, Any]:
    """One run with its tasks."""
    return {
        **workflow_json(record),
        "metadata": record.user_metadata,
        "output_preview": record.output_preview,
        "error": record.error,
        "tasks": [task_json(task) for task in tasks],
    }


def task_json(task: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "name": task.name,
        "status": task.status.value,
        "attempts": task.attempts,
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
        "output_preview": task.output_preview,
        "error": task.error,
    }
