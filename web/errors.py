"""The dashboard's errors: each one carries the HTTP status it answers with.

Views raise ``HttpError`` subclasses; errors the executor or the scheduler raise on purpose
are translated by ``http_error``. Anything else is a bug and answers 500.
"""

from __future__ import annotations

import sqlalchemy as sa

from executor.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    InvalidInputError,
    InvalidTypeError,
    PoolNotFoundError,
    TaskNotFoundError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowNotResumableError,
    WorkflowNotRetryableError,
    WorkflowQueueFullError,
    WorkflowStillActiveError,
)
from scheduler.errors import (
    BackfillNotFoundError,
    BackfillStateError,
    DagFactoryError,
    InvalidScheduleError,
    RunExistsError,
    ScheduleNotFoundError,
)


class WebError(WorkflowError):
    """Base class of the errors the dashboard raises on purpose."""


class HttpError(WebError):
    #: The response status; each subclass sets its own.
    status = 500


class BadRequest(HttpError):
    status = 400


class Unauthorized(HttpError):
    status = 401


class NotFound(HttpError):
    status = 404


class Conflict(HttpError):
    status = 409


class PayloadTooLarge(HttpError):
    status = 413


class Unavailable(HttpError):
    """Something the action needs is not in this process (Ray, the scheduler, the database)."""

    status = 503


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (restarting, failing over). Pages answer with a
    notice that they retry; nothing is wrong with the request itself."""

    #: What the client is told; the cause is logged, not shown.
    MESSAGE = (
        "Database unavailable: Gnomon cannot reach its database right now (it may be "
        "restarting). Try again in a few seconds."
    )
    #: Seconds after which a client should try again (the ``Retry-After`` header).
    RETRY_SECONDS = 5

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class InsecureBindError(WebError, ValueError):
    """Serving beyond loopback without an API token would hand the cluster to anyone."""


_BY_TYPE: list[tuple[type[BaseException], type[HttpError]]] = [
    (PoolNotFoundError, NotFound),
    (WorkflowNotFoundError, NotFound),
    (TaskNotFoundError, NotFound),
    (ScheduleNotFoundError, NotFound),
    (BackfillNotFoundError, NotFound),
    (BackfillStateError, Conflict),
    (WorkflowStillActiveError, Conflict),
    (WorkflowNotResumableError, Conflict),
    (WorkflowNotRetryableError, Conflict),
    (RunExistsError, Conflict),
    (WorkflowQueueFullError, Conflict),
    (InvalidInputError, BadRequest),
    (InvalidTypeError, BadRequest),
    (InvalidScheduleError, BadRequest),
    (DagFactoryError, BadRequest),
]


def http_error(error: BaseException) -> HttpError | None:
    """The HTTP answer to an error raised on purpose; None for a bug."""
    if isinstance(error, HttpError):
        return error
    if isinstance(error, DatabaseUnavailableError) or _lost_database(error):
        return DatabaseUnavailable()
    if isinstance(error, (DatabaseError, sa.exc.SQLAlchemyError)):
        return Unavailable("The database refused the operation; see the server's log")
    for kind, answer in _BY_TYPE:
        if isinstance(error, kind):
            message = getattr(error, "message", None) or str(error)
            return answer(message)
    return None


def _lost_database(error: BaseException) -> bool:
    """A connection that failed or broke: the server is down, restarting or unreachable.
    (The store translates its own errors; APScheduler's job store raises SQLAlchemy's.)"""
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError))
