"""``workflow.get_metadata``: Ray Workflows' metadata dicts, read from the store.

A workflow's: ``status`` (a plain string), ``user_metadata`` and ``stats``; a task's:
``task_id``, ``task_options``, ``user_metadata``, ``workflow_refs`` (its upstream task
ids) and ``stats``. ``stats`` holds ``start_time`` once it started (again at every
resume) and ``end_time`` only once it ended SUCCESSFUL or FAILED (a task: once its
function returned), as Ray wrote them. Gnomon adds a few keys (``workflow_id``,
``name``, a task's ``status`` and ``attempts``); it changes none of Ray's.
"""

from __future__ import annotations

from typing import Any

from executor.checkpoint import BlobStore, loads, read_checkpoint
from executor.dag import Graph, TaskSpec
from executor.errors import (
    NoSuchTaskError,
    NoSuchWorkflowError,
    TaskNotFoundError,
    WorkflowNotFoundError,
)
from executor.status import TaskStatus, WorkflowStatus
from executor.store import Store, TaskRecord

#: Workflow statuses after which Ray recorded an ``end_time``.
_ENDED = (WorkflowStatus.SUCCESSFUL, WorkflowStatus.FAILED)
#: Task statuses after which the task's function had returned.
_RETURNED = (TaskStatus.SUCCESSFUL, TaskStatus.CONTINUED)


def workflow_metadata(store: Store, workflow_id: str) -> dict[str, Any]:
    try:
        record = store.get_workflow(workflow_id)
    except WorkflowNotFoundError:
        raise NoSuchWorkflowError(workflow_id) from None
    stats: dict[str, float] = {}
    if record.started_at is not None:
        stats["start_time"] = record.started_at
    if record.status in _ENDED and record.ended_at is not None:
        stats["end_time"] = record.ended_at
    return {
        "status": record.status.value,
        "user_metadata": record.user_metadata,
        "stats": stats,
        "workflow_id": workflow_id,
        "name": record.name,
    }


def task_metadata(store: Store, blobs: BlobStore, workflow_id: str, task_id: str) -> dict[str, Any]:
    try:
        task = store.get_task(workflow_id, task_id)
    except WorkflowNotFoundError:
        raise NoSuchWorkflowError(workflow_id) from None
    except TaskNotFoundError:
        raise NoSuchTaskError(workflow_id, task_id) from None
    stats: dict[str, float] = {}
    if task.started_at is not None:
        stats["start_time"] = task.started_at
    if task.status in _RETURNED and task.ended_at is not None:
        stats["end_time"] = task.ended_at
    spec = _spec(store, blobs, task)
    return {
        "task_id": task_id,
        "task_options": None if spec is None else task_options(spec),
        "user_metadata": task.user_metadata,
        "workflow_refs": list(task.upstream),
        "stats": stats,
        "workflow_id": workflow_id,
        "name": task.name,
        "status": task.status.value,
        "attempts": task.attempts,
    }


def task_options(spec: TaskSpec) -> dict[str, Any]:
    """A task's options in Ray Workflows' shape."""
    options = spec.options
    return {
        "task_type": "FUNCTION",
        "max_retries": options.max_retries,
        "catch_exceptions": options.catch_exceptions,
        "retry_exceptions": options.retry_exceptions,
        "checkpoint": options.checkpoint,
        "ray_options": dict(spec.bound_options or {}),
    }


def _spec(store: Store, blobs: BlobStore, task: TaskRecord) -> TaskSpec | None:
    """The task's spec, from the graph that holds it: the workflow's own, or the
    continuation of the task that returned it."""
    if task.parent_task_id is None:
        data, blob = store.load_graph(task.workflow_id)
        if blob is not None:
            data = blobs.get(blob)
        if data is None:  # a run recorded without its graph
            return None
        graph: Graph = loads(data)
    else:
        checkpoint = store.load_checkpoint(task.workflow_id, task.parent_task_id)
        if checkpoint is None or checkpoint.kind != "continuation":
            return None
        graph = read_checkpoint(checkpoint, blobs)
    return graph.tasks.get(task.task_id)
