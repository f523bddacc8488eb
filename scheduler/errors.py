"""The scheduler's errors: the executor's one hierarchy (``WorkflowError``), extended."""

from __future__ import annotations

from executor.errors import InvalidInputError, WorkflowError


class SchedulerError(WorkflowError):
    """Base class of the errors the scheduler raises on purpose."""


class ScheduleNotFoundError(SchedulerError):
    def __init__(self, name: str) -> None:
        super().__init__(f"No schedule {name!r}")
        self.name = name


class InvalidScheduleError(SchedulerError, ValueError):
    """A schedule definition Gnomon cannot accept: a bad cron expression, time zone, option."""


class DuplicateScheduleError(InvalidScheduleError):
    def __init__(self, name: str, first: str, second: str) -> None:
        super().__init__(f"Schedule {name!r} is registered twice: by {first} and by {second}")
        self.name = name


class InvalidTargetError(SchedulerError, ValueError):
    """``gnomon run MODULE:FUNC`` named something that cannot be imported or run."""


class RunExistsError(SchedulerError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"Workflow {workflow_id!r} already exists")
        self.workflow_id = workflow_id


class DagFactoryError(SchedulerError):
    """A schedule's factory raised while building a run's DAG; the run records it as FAILED."""


class InvalidParamsError(SchedulerError, InvalidInputError):
    """Params that do not match the schedule's ``params_schema``; the message names the
    field."""


class InvalidBackfillError(SchedulerError, InvalidInputError):
    """A backfill Gnomon cannot start: a bad range, too many ticks, a schedule without
    ticks."""


class BackfillNotFoundError(SchedulerError):
    def __init__(self, backfill_id: str) -> None:
        super().__init__(f"No backfill {backfill_id!r}")
        self.backfill_id = backfill_id


class BackfillStateError(SchedulerError):
    """The backfill's state forbids the action (resuming a canceled one, say)."""
