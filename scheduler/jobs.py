"""APScheduler plumbing: job ids, the job store on the Gnomon database, the polling
scheduler, and the executor that hands each due job to the service.

Jobs in the shared store, by id:
- ``schedule:<name>``: a registered schedule. Its kwargs hold the trigger spec, the
  paused flag, and the backlog of ticks waiting for a free ``max_active_runs`` slot.
- ``trigger:<hash>``: a run requested by another process (``gnomon trigger``).
- ``wakeup:<workflow id>``: a timer wake-up for a workflow suspended in ``sleep``.
- ``deadline:<name>`` and ``deadline:<workflow id>``: deadline checks
  (``scheduler.deadlines``).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED, BaseScheduler
from apscheduler.util import datetime_to_utc_timestamp

if TYPE_CHECKING:
    from scheduler.service import SchedulerService

log = logging.getLogger(__name__)


@contextmanager
def job_stores_locked(scheduler: BaseScheduler) -> Iterator[bool]:
    """Hold the scheduler's job stores lock, as its own thread does from reading a due job
    to saving it; yields True. A job that waits for it gives up once the scheduler stops
    (yields False): APScheduler's shutdown holds that lock while it waits for running
    jobs, so the job would wait for ever, and the shutdown with it."""
    lock = scheduler._jobstores_lock  # type: ignore[attr-defined]
    while not lock.acquire(timeout=0.05):
        if scheduler.state == STATE_STOPPED:
            yield False
            return
    try:
        yield True
    finally:
        lock.release()


#: APScheduler's job table, in the Gnomon database.
JOBS_TABLE = "gnomon_apscheduler_jobs"
SCHEDULE = "schedule"
TRIGGER = "trigger"
WAKEUP = "wakeup"
DEADLINE = "deadline"
#: APScheduler's job id column is 191 characters.
_MAX_JOB_ID = 191


def job_id(kind: str, key: str) -> str:
    job = f"{kind}:{key}"
    if len(job) <= _MAX_JOB_ID and kind != TRIGGER:
        return job
    return f"{kind}:{hashlib.sha1(key.encode()).hexdigest()}"


def job_kind(job: Job) -> str:
    return job.id.partition(":")[0]


def stored_job(**state: Any) -> None:
    """The callable every Gnomon job names; ``DispatchExecutor`` runs jobs, not this."""
    raise RuntimeError("Gnomon jobs are run by the scheduler service's DispatchExecutor")


def jobstore_for(engine: sa.Engine) -> BatchingJobStore:
    """APScheduler's SQLAlchemy job store on the Gnomon database, its table created once
    even when two replicas start together."""
    store = BatchingJobStore(engine=engine, tablename=JOBS_TABLE)
    try:
        store.jobs_t.create(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        if not sa.inspect(engine).has_table(JOBS_TABLE):
            raise
    return store


class BatchingJobStore(SQLAlchemyJobStore):
    """Saves the jobs one scheduler pass fired in one transaction, not one each.

    APScheduler 3 commits every fired job's next run time on its own. With a thousand
    jobs due in the same second that is a thousand commits (each queuing for SQLite's
    write lock behind the runs being created) before the scheduler looks at the clock
    again, and the ticks falling due meanwhile are coalesced away. Inside ``batch()``
    updates wait; any read or other write saves them first.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._deferred: dict[str, Job] | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._deferred = {}
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._deferred = None

    def update_job(self, job: Job) -> None:
        if self._deferred is None:
            super().update_job(job)
        else:
            self._deferred[job.id] = job

    def flush(self) -> None:
        if not self._deferred:
            return
        pending, self._deferred = list(self._deferred.values()), {}
        update = (
            self.jobs_t.update()
            .where(self.jobs_t.c.id == sa.bindparam("job_id"))
            .values(next_run_time=sa.bindparam("next_at"), job_state=sa.bindparam("state"))
        )
        rows = [
            {
                "job_id": job.id,
                "next_at": datetime_to_utc_timestamp(job.next_run_time),
                "state": pickle.dumps(job.__getstate__(), self.pickle_protocol),
            }
            for job in pending
        ]
        with self.engine.begin() as connection:
            connection.execute(update, rows)

    def lookup_job(self, job_id: str) -> Job | None:
        self.flush()
        return super().lookup_job(job_id)

    def get_due_jobs(self, now: datetime) -> list[Job]:
        self.flush()
        return super().get_due_jobs(now)

    def get_next_run_time(self) -> datetime | None:
        self.flush()
        return super().get_next_run_time()

    def get_all_jobs(self) -> list[Job]:
        self.flush()
        return super().get_all_jobs()

    def add_job(self, job: Job) -> None:
        self.flush()
        super().add_job(job)

    def remove_job(self, job_id: str) -> None:
        self.flush()
        super().remove_job(job_id)


class PollingScheduler(BackgroundScheduler):
    """A scheduler that re-reads the shared job store at least every ``poll_interval``,
    and saves each pass's fired jobs in one transaction (``BatchingJobStore``).

    APScheduler 3 sleeps until the next run time it knows of, so a pause, a trigger or a
    replica's change made by another process would go unseen until then.
    """

    def __init__(self, poll_interval: float, **options: Any) -> None:
        self.poll_interval = poll_interval
        super().__init__(**options)

    def _process_jobs(self) -> float | None:
        try:
            with ExitStack() as batches:
                for store in list(self._jobstores.values()):
                    if isinstance(store, BatchingJobStore):
                        batches.enter_context(store.batch())
                wait = super()._process_jobs()
        except Exception:
            # APScheduler survives a failed read of due jobs, but anything else raised in
            # a pass (the database going away before the fired jobs are saved) ends its
            # loop thread, and no schedule would fire again. The jobs not saved are due
            # again next pass; their ticks' run ids make the second firing a no-op.
            log.exception("Scheduler pass failed; trying again in %.1f s", self.poll_interval)
            return self.poll_interval
        if self.state != STATE_RUNNING:
            return wait
        return self.poll_interval if wait is None else min(wait, self.poll_interval)


class DispatchExecutor(BaseExecutor):
    """Hands due jobs with their run times to the service.

    APScheduler's own executors call the job's function without the run time it was due
    at, but a tick's logical date *is* that run time. ``submit_job`` runs in the
    scheduler's thread while it holds the job stores lock, before it stores the job's
    next run time, so changes the service makes to ``job.kwargs`` here (the backlog) are
    saved with that same update.
    """

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self._service = service

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        try:
            self._service.on_due(job, run_times)
        except Exception:
            log.exception("Could not handle due job %s", job.id)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        raise NotImplementedError  # submit_job does the work
