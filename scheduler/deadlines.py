"""Deadlines: a run that has not succeeded by its deadline is late, and its notifiers get a
``deadline_missed`` event.

Two kinds of APScheduler job check them, in the shared job store (so they survive
restarts, and fire late rather than never after downtime):

- ``deadline:<name>``: a schedule's ``deadline=`` after each tick's logical date. Its
  trigger is the schedule's own, shifted by the deadline, and it fires whether or not the
  tick's run exists: a scheduler that was down, or a paused schedule's tick, misses its
  deadline too. It is not paused with the schedule.
- ``deadline:<workflow id>``: a run's ``deadline_after_start=``, a date job made when the
  run is created.

Each missed deadline is one event per notifier (the outbox is idempotent by the deadline),
however many replicas and jobs see it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from executor.errors import WorkflowNotFoundError
from executor.status import WorkflowStatus
from executor.store import Store
from scheduler import jobs
from scheduler.registry import Registry, Schedule, run_id

log = logging.getLogger(__name__)


class ShiftedTrigger(BaseTrigger):
    """Another trigger's fire times, ``seconds`` later: a tick's deadline."""

    def __init__(self, base: BaseTrigger, seconds: float) -> None:
        self.base = base
        self.seconds = seconds

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        shift = timedelta(seconds=self.seconds)
        previous = previous_fire_time - shift if previous_fire_time is not None else None
        fire = self.base.get_next_fire_time(previous, now - shift)
        return fire + shift if fire is not None else None

    def __str__(self) -> str:
        return f"{self.base} + {self.seconds:g}s"


class Deadlines:
    def __init__(
        self, scheduler: BaseScheduler, registry: Registry, store: Store, notify: Sequence[str]
    ) -> None:
        self._scheduler = scheduler
        self._registry = registry
        self._store = store
        #: Notifier URLs every schedule has (``gnomon up --notify``).
        self._notify = tuple(notify)

    def sync(self, schedule: Schedule) -> None:
        """Give a schedule with ``deadline=`` its deadline job (or take it away)."""
        identifier = jobs.job_id(jobs.DEADLINE, schedule.name)
        seconds = schedule.alerts.deadline
        timed = schedule.trigger.kind in ("cron", "interval", "date")
        state = {**schedule.trigger.as_state(), "deadline": seconds}
        job = self._scheduler.get_job(identifier, "default")
        if seconds is None or not timed:
            if job is not None:
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(identifier, "default")
            return
        if job is not None and job.kwargs.get("spec") == state:
            if job.coalesce == schedule.catchup:
                self._scheduler.modify_job(identifier, "default", coalesce=not schedule.catchup)
            return
        trigger = ShiftedTrigger(schedule.trigger.build(), seconds)
        if job is not None:
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(identifier, "default")
        with contextlib.suppress(ConflictingIdError):  # a replica added it at the same moment
            self._scheduler.add_job(
                jobs.stored_job,
                trigger=trigger,
                id=identifier,
                name=f"deadline {schedule.name}",
                jobstore="default",
                # Missed deadlines after downtime follow ``catchup``, as the ticks do.
                coalesce=not schedule.catchup,
                kwargs={"name": schedule.name, "spec": state},
            )

    def plan_run(self, schedule: Schedule, workflow_id: str, deadline_at: float) -> None:
        """A run with a deadline after its start: a date job at its deadline."""
        if schedule.alerts.deadline_after_start is None:
            return  # its deadline is its tick's, which the schedule's job checks
        self._scheduler.add_job(
            jobs.stored_job,
            trigger=DateTrigger(run_date=datetime.fromtimestamp(deadline_at, timezone.utc)),
            id=jobs.job_id(jobs.DEADLINE, workflow_id),
            name=f"deadline {workflow_id}",
            jobstore="default",
            kwargs={"name": schedule.name, "workflow_id": workflow_id, "at": deadline_at},
            replace_existing=True,
        )

    def replan(self) -> None:
        """Date jobs for the active runs with a deadline (a crash may have come between a
        run's creation and its job)."""
        for workflow_id, deadline_at in self._store.open_deadlines():
            identifier = jobs.job_id(jobs.DEADLINE, workflow_id)
            if self._scheduler.get_job(identifier, "default") is not None:
                continue
            name = workflow_id.rsplit("@", 1)[0]
            schedule = self._registry.find(name)
            if schedule is not None:
                self.plan_run(schedule, workflow_id, deadline_at)

    def on_due(self, kwargs: dict[str, Any], run_times: list[datetime]) -> None:
        """A deadline job fired, with these kwargs (in a launch thread)."""
        schedule = self._registry.find(kwargs["name"])
        if schedule is None:
            log.info("Deadline of unregistered schedule %s skipped", kwargs["name"])
            return
        if "workflow_id" in kwargs:
            self.check(schedule, kwargs["workflow_id"], float(kwargs["at"]))
            return
        seconds = float(kwargs["spec"]["deadline"])
        for moment in run_times:
            logical = moment - timedelta(seconds=seconds)
            self.check(schedule, run_id(schedule.name, logical), moment.timestamp())

    def check(self, schedule: Schedule, workflow_id: str, deadline_at: float) -> bool:
        """Report the run's deadline missed unless it succeeded by then; True if missed."""
        try:
            record = self._store.get_workflow(workflow_id)
        except WorkflowNotFoundError:
            record = None
        if (
            record is not None
            and record.status == WorkflowStatus.SUCCESSFUL
            and record.ended_at is not None
            and record.ended_at <= deadline_at
        ):
            return False
        routes = [r for r in schedule.alerts.routes(self._notify) if r.event == "deadline_missed"]
        status = record.status.value if record is not None else None
        self._store.deadline_missed(workflow_id, schedule.name, deadline_at, routes, status)
        log.warning(
            "%s missed its deadline (%s): %s",
            workflow_id,
            datetime.fromtimestamp(deadline_at, timezone.utc).isoformat(),
            status or "never started",
        )
        return True
