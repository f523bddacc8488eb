"""Reading a workflow's output, or one task's, from its checkpoint; or the error that
stands in its place once it can no longer come."""

from __future__ import annotations

from typing import Any

from executor.checkpoint import BlobStore, read_checkpoint
from executor.errors import (
    WorkflowCancellationError,
    WorkflowExecutionError,
    WorkflowNotResumableError,
)
from executor.status import WorkflowStatus
from executor.store import Store

#: What ``stored_output`` returns while the output may still come.
NOT_YET: Any = object()


def stored_output(
    store: Store, blobs: BlobStore, workflow_id: str, task_id: str | None = None
) -> Any:
    """The stored output of the workflow (or of ``task_id``), or ``NOT_YET`` while it is
    running. Raises ``WorkflowNotFoundError`` and ``TaskNotFoundError``; and, where the
    output will not come without an operator, the error a caller of ``get_output`` sees:
    ``WorkflowExecutionError`` (FAILED, or its owner died),
    ``WorkflowCancellationError``, ``WorkflowNotResumableError``."""
    record = store.get_workflow(workflow_id)
    target = task_id or record.output_task_id
    if target is None:
        raise WorkflowNotResumableError(workflow_id, "it has no output task")
    task = store.get_task(workflow_id, target)
    if task.output_task_id is not None:
        checkpoint = store.load_checkpoint(workflow_id, task.output_task_id)
        if checkpoint is not None:
            return read_checkpoint(checkpoint, blobs)
    status = record.status
    if status == WorkflowStatus.FAILED:
        raise WorkflowExecutionError(workflow_id, last_line(record.error))
    if status == WorkflowStatus.CANCELED:
        raise WorkflowCancellationError(workflow_id)
    if status == WorkflowStatus.RESUMABLE:
        if task_id:
            raise WorkflowNotResumableError(
                workflow_id, "its owner died before it finished; resume it first"
            )
        raise WorkflowExecutionError(workflow_id, "its owner died; resume it")
    if status == WorkflowStatus.SUCCESSFUL:
        raise WorkflowNotResumableError(
            workflow_id, "it is SUCCESSFUL and its output is not stored"
        )
    return NOT_YET


def last_line(text: str | None) -> str:
    """The last non-blank line of a stored error: a traceback's ``Type: message``."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
