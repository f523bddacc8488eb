"""The backlog: due ticks waiting for one of their schedule's ``max_active_runs`` slots.

A schedule's backlog lives in its APScheduler job's kwargs, in the database, so queued
ticks survive a restart. With ``catchup=False`` it holds at most the latest tick; with
``catchup=True`` every tick, started oldest first as slots free up.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler

from scheduler import jobs
from scheduler.registry import Registry, Schedule, format_logical_date, parse_logical_date, run_id
from scheduler.runs import RunLauncher

log = logging.getLogger(__name__)


class Backlog:
    def __init__(
        self,
        scheduler: BaseScheduler,
        registry: Registry,
        launcher: RunLauncher,
        pool: ThreadPoolExecutor,
    ) -> None:
        self._scheduler = scheduler
        self._registry = registry
        self._launcher = launcher
        self._pool = pool
        #: Schedules whose job may hold queued ticks.
        self._names: set[str] = set()

    def track(self, job: Job) -> None:
        if job.kwargs.get("backlog"):
            self._names.add(job.kwargs["name"])

    def forget(self, name: str) -> None:
        self._names.discard(name)

    def admit(self, schedule: Schedule, job: Job, run_times: list[datetime]) -> None:
        """Start what fits of a due job's ticks (and its queue); queue the rest.

        Runs in the scheduler thread before it saves the job (``DispatchExecutor``), so
        the new queue is saved with the job's next run time.
        """
        due = set(_queued(job)) | {moment.astimezone(timezone.utc) for moment in run_times}
        launch, keep = self._take_slots(schedule, sorted(due))
        job.kwargs = _with_queue(job, keep)
        if keep:
            self._names.add(schedule.name)
        if launch:
            self._pool.submit(self._launch, schedule, launch)

    def _take_slots(
        self, schedule: Schedule, due: list[datetime]
    ) -> tuple[list[datetime], list[datetime]]:
        """Split due ticks into those to start now and those to keep for later."""
        due = _worth_keeping(schedule, due)
        if schedule.trigger.kind == "date":
            launch, keep = due, []
        else:
            active = self._launcher.active.count(schedule.name)
            free = max(schedule.max_active_runs - active, 0)
            launch, keep = due[:free], due[free:]
        self._launcher.active.starting(schedule.name, [run_id(schedule.name, t) for t in launch])
        return launch, keep

    def drain(self) -> None:
        """Start queued ticks whose slots have freed up (the housekeeping pass)."""
        for name in list(self._names):
            try:
                self._drain(name)
            except Exception:
                log.exception("Could not start the backlog of %s", name)

    def _drain(self, name: str) -> None:
        schedule = self._registry.find(name)
        identifier = jobs.job_id(jobs.SCHEDULE, name)
        # Under the job stores lock, so the scheduler thread cannot save a stale backlog
        # over this one (it holds the same lock from reading a due job to saving it).
        with jobs.job_stores_locked(self._scheduler) as locked:
            if not locked:
                return  # stopping: the backlog stays queued in the job store
            job = self._scheduler.get_job(identifier, "default")
            backlog = _queued(job) if job is not None else []
            if schedule is None or job is None or not backlog:
                self._names.discard(name)
                return
            if job.kwargs.get("paused"):
                return
            launch, keep = self._take_slots(schedule, backlog)
            if not launch:
                return
            self._scheduler.modify_job(identifier, "default", kwargs=_with_queue(job, keep))
        if not keep:
            self._names.discard(name)
        self._pool.submit(self._launch, schedule, launch)

    def _launch(self, schedule: Schedule, ticks: list[datetime]) -> None:
        waiting = self._launcher.launch_ticks(schedule, ticks)
        if waiting:
            try:
                self._requeue(schedule, waiting)
            except Exception:
                log.exception("Could not queue %s again for %s", waiting, schedule.name)

    def _requeue(self, schedule: Schedule, ticks: list[datetime]) -> None:
        """Put ticks that found no free slot back in the schedule's backlog."""
        identifier = jobs.job_id(jobs.SCHEDULE, schedule.name)
        with self._scheduler._jobstores_lock:  # type: ignore[attr-defined]
            job = self._scheduler.get_job(identifier, "default")
            if job is None:  # the schedule was removed meanwhile
                return
            keep = _worth_keeping(schedule, sorted(set(_queued(job)) | set(ticks)))
            self._scheduler.modify_job(identifier, "default", kwargs=_with_queue(job, keep))
        self._names.add(schedule.name)


def _queued(job: Job) -> list[datetime]:
    return [parse_logical_date(text) for text in job.kwargs.get("backlog", [])]


def _with_queue(job: Job, ticks: list[datetime]) -> dict[str, Any]:
    """The job's kwargs with ``ticks`` as its queue."""
    return {**job.kwargs, "backlog": [format_logical_date(t) for t in ticks]}


def _worth_keeping(schedule: Schedule, ticks: list[datetime]) -> list[datetime]:
    """Oldest-first ticks as ``catchup`` says: all of them, or only the latest."""
    return ticks if schedule.catchup else ticks[-1:]
