"""Frozen records the store hands out; callers never see rows or tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class TaskLog:
    #: 1 for the first attempt that left output, and so on.
    attempt: int
    started_at: float
    text: str
    updated_at: float


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
