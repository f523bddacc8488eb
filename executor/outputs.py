"""Reading a workflow's output, or one task's, from its checkpoint; or the error that
stands in its place once it will not come.

The errors are Ray Workflows': ``ValueError``s (``OutputUnavailableError``) with Ray's
messages first, raised when the caller reads the output's ref, not when it asks.
"""

from __future__ import annotations

from typing import Any

from executor.checkpoint import BlobStore, read_checkpoint
from executor.errors import OutputUnavailableError, TaskNotFoundError, WorkflowNotFoundError
from executor.status import ACTIVE, WorkflowStatus
from executor.store import Store, TaskRecord

#: What ``stored_output`` returns while the output may still come.
NOT_YET: Any = object()


def stored_output(
    store: Store, blobs: BlobStore, workflow_id: str, task_id: str | None = None
) -> Any:
    """The stored output of the workflow (or of ``task_id``), or ``NOT_YET`` while the
    workflow is RUNNING or PENDING: a task that has not run yet, even one a continuation
    has yet to add, may still produce it. Raises ``OutputUnavailableError`` once it will
    not come: the workflow is unknown, canceled, failed, or its owner died."""
    try:
        record = store.get_workflow(workflow_id)
    except WorkflowNotFoundError:
        raise OutputUnavailableError(workflow_id, f"No such workflow '{workflow_id}'") from None
    status = record.status
    if status == WorkflowStatus.CANCELED:
        raise OutputUnavailableError(workflow_id, f"Workflow {workflow_id} is canceled")
    target = task_id or record.output_task_id
    task = _task(store, workflow_id, target) if target else None
    if task is not None and task.output_task_id is not None:
        checkpoint = store.load_checkpoint(workflow_id, task.output_task_id)
        if checkpoint is not None:
            return read_checkpoint(checkpoint, blobs)
    if status in ACTIVE:
        return NOT_YET
    if status == WorkflowStatus.FAILED:
        why = f": it failed: {last_line(record.error)}"
    elif status == WorkflowStatus.RESUMABLE:
        why = ": its owner died before it finished; resume it"
    elif task is None:
        why = ": no such task"
    else:
        why = ": it was not checkpointed"
    if task_id:
        message = f"Cannot load output from task id '{task_id}' in workflow '{workflow_id}'"
    else:
        message = f"Cannot load output from workflow '{workflow_id}'"
    raise OutputUnavailableError(workflow_id, message + why)


def _task(store: Store, workflow_id: str, task_id: str) -> TaskRecord | None:
    try:
        return store.get_task(workflow_id, task_id)
    except TaskNotFoundError:
        return None


def last_line(text: str | None) -> str:
    """The last non-blank line of a stored error: a traceback's ``Type: message``."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
