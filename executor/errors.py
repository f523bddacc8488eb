"""Gnomon's one error hierarchy.

Everything here can be raised inside a Ray task or a Ray actor, so every class
pickles: ``__reduce__`` keeps the constructor arguments and the chained cause,
which plain exception pickling drops.
"""

from __future__ import annotations

import queue
from typing import Any


class WorkflowError(Exception):
    """Base class of every error Gnomon raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__, self.__cause__))


def _rebuild(
    cls: type[BaseException], args: tuple, state: dict, cause: BaseException | None
) -> BaseException:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    error.__cause__ = cause
    return error


class WorkflowNotFoundError(WorkflowError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"No workflow {workflow_id!r}")
        self.workflow_id = workflow_id


class TaskNotFoundError(WorkflowError):
    def __init__(self, workflow_id: str, task_id: str) -> None:
        super().__init__(f"No task {task_id!r} in workflow {workflow_id!r}")
        self.workflow_id = workflow_id
        self.task_id = task_id


class WorkflowExecutionError(WorkflowError):
    """A task failed; the task's own exception is chained as ``__cause__``."""

    def __init__(self, workflow_id: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"Workflow {workflow_id!r} failed{detail}")
        self.workflow_id = workflow_id


class WorkflowCancellationError(WorkflowError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"Workflow {workflow_id!r} was canceled")
        self.workflow_id = workflow_id


class WorkflowNotResumableError(WorkflowError):
    def __init__(self, workflow_id: str, why: str = "") -> None:
        detail = f": {why}" if why else ""
        super().__init__(f"Workflow {workflow_id!r} cannot be resumed{detail}")
        self.workflow_id = workflow_id


class WorkflowStillActiveError(WorkflowError, RuntimeError):
    """The workflow is RUNNING or PENDING. A RuntimeError, as Ray raised for running or
    resuming such a workflow again."""

    def __init__(self, workflow_id: str, operation: str = "delete") -> None:
        if operation in ("run", "resume"):
            message = f"Workflow '{workflow_id}' is already running or pending."
        else:
            message = f"Cannot {operation} workflow {workflow_id!r}: it is still active"
        super().__init__(message)
        self.workflow_id = workflow_id


class TaskCrashedError(WorkflowError):
    """The workers running a task died more often than its ``max_retries`` allows."""

    def __init__(self, task_id: str, crashes: int, max_retries: int) -> None:
        super().__init__(
            f"Task {task_id!r} failed: its worker died {crashes} time(s), and max_retries "
            f"is {max_retries}"
        )
        self.task_id = task_id


class WorkflowNotRetryableError(WorkflowError):
    """A retry, clear or fork cannot run the workflow again as asked (it is not a
    registered one, its registration is gone, or its current code contradicts a
    checkpoint); the reason names the first problem."""

    def __init__(self, workflow_id: str, why: str) -> None:
        super().__init__(f"Workflow {workflow_id!r} cannot run again: {why}")
        self.workflow_id = workflow_id


class CheckpointError(WorkflowError):
    """A task's output could not be made durable (unpicklable, blob store unwritable)."""


class InvalidInputError(WorkflowError, ValueError):
    """The caller passed something Gnomon cannot accept (a bad filter, bad JSON)."""


class InvalidTypeError(WorkflowError, TypeError):
    """The caller passed something of the wrong type (not a DAG, not a string id, not an
    EventListener, arguments that do not fit the function): a TypeError, as in Ray."""


class NoSuchWorkflowError(WorkflowNotFoundError, ValueError):
    """``get_metadata`` of an unknown workflow: Ray raised ValueError with this message."""

    def __init__(self, workflow_id: str) -> None:
        WorkflowError.__init__(self, f"No such workflow_id '{workflow_id}'")
        self.workflow_id = workflow_id


class NoSuchTaskError(TaskNotFoundError, ValueError):
    """``get_metadata`` of an unknown task: Ray raised ValueError with this message."""

    def __init__(self, workflow_id: str, task_id: str) -> None:
        WorkflowError.__init__(self, f"No such task_id '{task_id}' in workflow '{workflow_id}'")
        self.workflow_id = workflow_id
        self.task_id = task_id


class OutputUnavailableError(WorkflowError, ValueError):
    """``get_output`` of an output that is not stored and will not come without an
    operator (the workflow failed, was canceled, or has no such task): a ValueError,
    with Ray's message first."""

    def __init__(self, workflow_id: str, message: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class NoFreeSlotError(WorkflowError):
    """Creating the run would exceed its name's limit of active runs."""

    def __init__(self, workflow_id: str, name: str, limit: int) -> None:
        super().__init__(
            f"Workflow {workflow_id!r} not created: {name!r} already has {limit} active run(s)"
        )
        self.workflow_id, self.name, self.limit = workflow_id, name, limit


class WorkflowQueueFullError(WorkflowError, queue.Full):
    """The workflow queue holds ``max_pending_workflows`` already (Ray raised
    ``queue.Full`` with this message)."""

    def __init__(self) -> None:
        super().__init__("Workflow queue has been full")


class TaskTimeoutError(WorkflowError, TimeoutError):
    """A task ran past its ``timeout_s`` and was stopped. A ``TimeoutError`` (so an
    ``OSError``): a retry policy ``on=(IOError,)`` retries it, as it would a hung call."""

    def __init__(self, task_id: str, timeout_s: float, how: str = "") -> None:
        detail = f"; {how}" if how else ""
        super().__init__(f"Task {task_id!r} ran past its timeout of {timeout_s:g} s{detail}")
        self.task_id = task_id
        self.timeout_s = timeout_s


class WorkflowTimeoutError(WorkflowExecutionError):
    """A run ran past its own ``timeout_s``: its tasks were stopped and it is FAILED."""

    def __init__(self, workflow_id: str, timeout_s: float) -> None:
        super().__init__(workflow_id, f"it ran past its timeout of {timeout_s:g} s")
        self.timeout_s = timeout_s


class PoolNotFoundError(InvalidInputError):
    """A task names a concurrency pool nobody created (``gnomon pool set``)."""

    def __init__(self, pool: str) -> None:
        super().__init__(f"No pool {pool!r}; create it with `gnomon pool set {pool} --slots N`")
        self.pool = pool


class DatabaseError(WorkflowError):
    """The database refused a statement (the store translates SQLAlchemy's errors)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(self._describe(url, reason))
        self.url = url
        self.reason = reason

    @staticmethod
    def _describe(url: str, reason: str) -> str:
        return f"Database {url} refused the operation: {reason}"


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached or used (down, restarting, unreachable)."""

    @staticmethod
    def _describe(url: str, reason: str) -> str:
        return f"Database {url} is unavailable: {reason}"


def one_line(error: BaseException) -> str:
    """An error as one line for a user: a Gnomon (or click) error's own message, any
    other as ``Type: first line of its message``."""
    message = getattr(error, "message", None)
    try:
        text = str(message or error)
    except Exception:  # a user's exception that cannot even print itself
        text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if isinstance(message, str) and lines:
        return lines[0]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
