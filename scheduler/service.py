"""The scheduler service: APScheduler on the Gnomon database, firing registered schedules.

Schedules, pauses, backlogs and next run times live in APScheduler's SQLAlchemy job store
on the same database as the workflows, so they survive restarts and are shared by
replicas. Every replica fires every tick; the tick's workflow id makes all but the first
a no-op. Misfires after downtime follow ``catchup``: APScheduler coalesces the missed
ticks into the latest one (``catchup=False``) or hands all of them over, oldest first
(``catchup=True``), and ticks beyond ``max_active_runs`` wait in the schedule's backlog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as LocalExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.triggers.date import DateTrigger

from executor import workflow
from executor.config import StoreConfig, handles
from executor.errors import WorkflowError
from executor.store.migrate import upgrade
from executor.store.records import BackfillRecord
from scheduler import jobs
from scheduler.alerts import check_notifier, default_notifiers
from scheduler.backfill import FINISHED, TRANSITIONS, BackfillDriver, parse_moment, plan
from scheduler.backlog import Backlog
from scheduler.deadlines import Deadlines
from scheduler.delivery import Dispatcher
from scheduler.errors import (
    BackfillNotFoundError,
    BackfillStateError,
    InvalidBackfillError,
    RunExistsError,
    ScheduleNotFoundError,
)
from scheduler.params import validate_params
from scheduler.recovery import RECOVERY_INTERVAL, recover
from scheduler.registry import (
    REGISTRY,
    Registry,
    Schedule,
    format_logical_date,
    parse_logical_date,
    run_id,
)
from scheduler.runs import RunLauncher
from scheduler.triggers import TriggerSpec

log = logging.getLogger(__name__)

#: Seconds between reads of the shared job store (see ``PollingScheduler``).
POLL_INTERVAL = float(os.environ.get("GNOMON_SCHEDULER_POLL", "1"))
#: Seconds between housekeeping passes: start backlogged ticks, read finished runs.
HOUSEKEEPING_INTERVAL = 1.0
#: Threads that build DAGs and submit runs, so a slow factory never delays other ticks.
LAUNCH_THREADS = int(os.environ.get("GNOMON_LAUNCH_THREADS", "8"))


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    trigger: str
    next_run_at: datetime | None
    paused: bool
    #: ticks waiting for a free ``max_active_runs`` slot
    backlog: int
    last_run: dict[str, str] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trigger": self.trigger,
            "next_run_at": format_logical_date(self.next_run_at) if self.next_run_at else None,
            "paused": self.paused,
            "backlog": self.backlog,
            "last_run": self.last_run,
        }


class SchedulerService:
    """Fires the schedules of ``registry`` on the database at ``database_url``.

    ``start()`` runs it; ``open()`` only connects, for processes that read and change
    schedules (the CLI) while a running service elsewhere fires them.
    """

    def __init__(
        self,
        registry: Registry = REGISTRY,
        database_url: str | None = None,
        *,
        storage: str | None = None,
        poll_interval: float = POLL_INTERVAL,
        recovery_interval: float = RECOVERY_INTERVAL,
        notify: Sequence[str] | None = None,
        base_url: str | None = None,
    ) -> None:
        """``notify``: notifier URLs for every schedule (default ``$GNOMON_NOTIFY``);
        ``base_url``: the dashboard's address, for the links in notifications."""
        self.registry = registry
        self.config = StoreConfig.resolve(database_url, storage)
        self.store = handles(self.config).store
        self.launcher = RunLauncher(self.store)
        self.recovery_interval = recovery_interval
        self._pool = ThreadPoolExecutor(LAUNCH_THREADS, thread_name_prefix="gnomon-launch")
        self._orphans_logged: set[str] = set()
        self._planned_wakeups: dict[str, float] = {}
        self._running = False
        self.scheduler = jobs.PollingScheduler(
            poll_interval,
            timezone=timezone.utc,
            executors={"default": jobs.DispatchExecutor(self), "local": LocalExecutor(2)},
            job_defaults={"misfire_grace_time": None, "max_instances": 1},
        )
        self.backlog = Backlog(self.scheduler, registry, self.launcher, self._pool)
        self.notify = (
            default_notifiers() if notify is None else tuple(check_notifier(u) for u in notify)
        )
        self.launcher.notify = self.notify
        self.deadlines = Deadlines(self.scheduler, registry, self.store, self.notify)
        self.launcher.on_deadline = self.deadlines.plan_run
        self.dispatcher = Dispatcher(self.store, registry, base_url)
        self.backfill_driver = BackfillDriver(self.store, registry, self.launcher, self._pool)

    # --------------------------------------------------------------- lifecycle

    def open(self) -> SchedulerService:
        """Connect to the job store without firing anything."""
        if self.scheduler.running:
            return self
        upgrade(self.store)
        self.scheduler.add_jobstore(jobs.jobstore_for(self.store.checked_engine), "default")
        self.scheduler.add_jobstore(MemoryJobStore(), "local")
        self.scheduler.start(paused=True)
        return self

    def start(self) -> SchedulerService:
        """Init the executor (Ray, migrations), sync the registry, recover, then fire."""
        workflow.init(self.config.database_url, storage=self.config.storage)
        self.open()
        self.sync()
        self.deadlines.replan()
        self.recover()
        self.dispatcher.start()
        self.scheduler.add_job(
            self.recover,
            "interval",
            seconds=self.recovery_interval,
            id="recovery",
            jobstore="local",
            executor="local",
        )
        self.scheduler.add_job(
            self.housekeeping,
            "interval",
            seconds=HOUSEKEEPING_INTERVAL,
            id="housekeeping",
            jobstore="local",
            executor="local",
        )
        self._running = True
        self.scheduler.resume()
        log.info("Scheduler started with %d schedule(s)", len(self.registry))
        return self

    def stop(self) -> None:
        """Stop firing and wait for the runs being submitted; running workflows go on."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.dispatcher.stop()
        self._pool.shutdown(wait=True)
        self._running = False

    def __enter__(self) -> SchedulerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------- registration

    def sync(self) -> None:
        """Store a job per registered schedule. An existing job keeps its next run time,
        pause and backlog; only a changed trigger is replaced (and recomputed)."""
        for schedule in self.registry:
            identifier = jobs.job_id(jobs.SCHEDULE, schedule.name)
            state = schedule.trigger.as_state()
            job = self.scheduler.get_job(identifier, "default")
            if job is None:
                self._add_schedule_job(schedule, identifier, state)
                continue
            if job.kwargs.get("spec") != state:
                log.info("Trigger of %s changed to %s", schedule.name, schedule.trigger.describe())
                self.scheduler.modify_job(
                    identifier,
                    "default",
                    kwargs={**job.kwargs, "spec": state, "describe": schedule.trigger.describe()},
                )
                if job.kwargs.get("paused"):
                    self.scheduler.modify_job(
                        identifier, "default", trigger=schedule.trigger.build(), next_run_time=None
                    )
                else:
                    self.scheduler.reschedule_job(
                        identifier, "default", trigger=schedule.trigger.build()
                    )
            if job.coalesce == schedule.catchup:
                self.scheduler.modify_job(identifier, "default", coalesce=not schedule.catchup)
            params = {"params": schedule.params, "params_schema": schedule.params_schema}
            if any(job.kwargs.get(key) != value for key, value in params.items()):
                # Kept with the job, so processes without the dags (the CLI) check params.
                job = self.scheduler.get_job(identifier, "default") or job
                self.scheduler.modify_job(identifier, "default", kwargs={**job.kwargs, **params})
            self.backlog.track(job)
        for schedule in self.registry:
            self.deadlines.sync(schedule)

    def _add_schedule_job(self, schedule: Schedule, identifier: str, state: dict) -> None:
        options: dict[str, Any] = {}
        if schedule.paused:
            options["next_run_time"] = None
        elif schedule.trigger.kind == "date" and self.launcher.exists(
            run_id(schedule.name, schedule.trigger.at)  # type: ignore[arg-type]
        ):
            options["next_run_time"] = None  # the one-off already ran
        with contextlib.suppress(ConflictingIdError):  # a replica added it at the same moment
            self.scheduler.add_job(
                jobs.stored_job,
                trigger=schedule.trigger.build(),
                id=identifier,
                name=schedule.name,
                jobstore="default",
                coalesce=not schedule.catchup,
                kwargs={
                    "name": schedule.name,
                    "spec": state,
                    "paused": schedule.paused,
                    "describe": schedule.trigger.describe(),
                    "backlog": [],
                    "params": schedule.params,
                    "params_schema": schedule.params_schema,
                },
                **options,
            )

    def remove(self, name: str) -> None:
        """Forget a schedule's job (its runs stay)."""
        try:
            self.scheduler.remove_job(jobs.job_id(jobs.SCHEDULE, name), "default")
        except JobLookupError:
            raise ScheduleNotFoundError(name) from None
        self.backlog.forget(name)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(jobs.job_id(jobs.DEADLINE, name), "default")

    # ------------------------------------------------------------------ firing

    def on_due(self, job: Job, run_times: list[datetime]) -> None:
        """Called by ``DispatchExecutor`` in the scheduler thread; see its docstring."""
        kind = jobs.job_kind(job)
        if kind == jobs.SCHEDULE:
            self._on_tick(job, run_times)
        elif kind == jobs.TRIGGER:
            self._pool.submit(self._run_trigger_job, dict(job.kwargs))
        elif kind == jobs.WAKEUP:
            self._pool.submit(self._wake, job.kwargs["workflow_id"])
        elif kind == jobs.DEADLINE:
            self._pool.submit(self.deadlines.on_due, dict(job.kwargs), list(run_times))

    def _on_tick(self, job: Job, run_times: list[datetime]) -> None:
        name = job.kwargs["name"]
        schedule = self.registry.find(name)
        if schedule is None:
            if name not in self._orphans_logged:
                self._orphans_logged.add(name)
                log.warning(
                    "Schedule %s is in the job store but not registered here; "
                    "its ticks are skipped",
                    name,
                )
            return
        self.backlog.admit(schedule, job, run_times)

    def housekeeping(self) -> None:
        """Read finished runs' refs; start queued ticks whose slots freed up."""
        self.launcher.reap()
        self.backlog.drain()
        try:
            self.backfill_driver.drive()
        except Exception:  # the database may be restarting: the next pass tries again
            log.exception("Could not drive the backfills")

    def recover(self) -> list[str]:
        """Resume workflows whose owner died, and plan the wake-ups falling due soon."""
        resumed = recover(self.launcher)
        try:
            self.plan_wakeups()
        except Exception:
            log.exception("Could not plan wake-ups")
        return resumed

    # ------------------------------------------------------- manual triggers

    def trigger(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        trigger: str = "manual",
        workflow_id: str | None = None,
    ) -> str:
        """Start a run of ``name`` now, ``params`` merged over the schedule's defaults.

        With the schedule registered in this process the run starts here and now.
        Otherwise (the CLI) the request is stored as a job, and the service that has the
        schedule registered starts it within ``POLL_INTERVAL``. Returns the workflow id.
        """
        now = datetime.now(timezone.utc)
        workflow_id = workflow_id or run_id(name, now)
        schedule = self.registry.find(name)
        if schedule is not None and self._running:
            started = self.launcher.launch(schedule, now, params, trigger, workflow_id)
            assert started is not None
            return started
        job = self.scheduler.get_job(jobs.job_id(jobs.SCHEDULE, name), "default")
        if job is None:
            raise ScheduleNotFoundError(name)
        if params and job.kwargs.get("params_schema"):
            validate_params(job.kwargs["params_schema"], {**job.kwargs["params"], **params})
        if self.launcher.exists(workflow_id):
            raise RunExistsError(workflow_id)
        self.scheduler.add_job(
            jobs.stored_job,
            trigger=DateTrigger(run_date=now),
            jobstore="default",
            id=jobs.job_id(jobs.TRIGGER, workflow_id),
            name=f"trigger {name}",
            kwargs={
                "name": name,
                "params": params or {},
                "trigger": trigger,
                "logical_date": format_logical_date(now),
                "workflow_id": workflow_id,
            },
        )
        return workflow_id

    def _run_trigger_job(self, request: dict[str, Any]) -> None:
        schedule = self.registry.find(request["name"])
        if schedule is None:
            log.warning("Trigger of unknown schedule %s dropped", request["name"])
            return
        try:
            self.launcher.launch(
                schedule,
                parse_logical_date(request["logical_date"]),
                request["params"],
                request["trigger"],
                request["workflow_id"],
            )
        except Exception:
            log.exception("Could not start the triggered run %s", request["workflow_id"])

    # --------------------------------------------------------- pause/unpause

    def pause(self, name: str) -> None:
        with self.scheduler._jobstores_lock:
            job = self._schedule_job(name)
            self.scheduler.modify_job(
                job.id, "default", next_run_time=None, kwargs={**job.kwargs, "paused": True}
            )

    def unpause(self, name: str) -> None:
        with self.scheduler._jobstores_lock:
            job = self._schedule_job(name)
            upcoming = job.trigger.get_next_fire_time(None, datetime.now(timezone.utc))
            if (
                upcoming is not None
                and job.kwargs["spec"]["kind"] == "date"
                and self.launcher.exists(run_id(name, upcoming))
            ):
                upcoming = None  # the one-off already ran
            self.scheduler.modify_job(
                job.id, "default", next_run_time=upcoming, kwargs={**job.kwargs, "paused": False}
            )

    def _schedule_job(self, name: str) -> Job:
        job = self.scheduler.get_job(jobs.job_id(jobs.SCHEDULE, name), "default")
        if job is None:
            raise ScheduleNotFoundError(name)
        return job

    # --------------------------------------------------------------- reading

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule in the job store (registered here or by another process)."""
        infos = []
        for job in self.scheduler.get_jobs("default"):
            if jobs.job_kind(job) != jobs.SCHEDULE:
                continue
            name = job.kwargs["name"]
            last = self.store.list_workflows(name=name, limit=1)
            infos.append(
                ScheduleInfo(
                    name=name,
                    trigger=job.kwargs.get("describe", str(job.trigger)),
                    next_run_at=job.next_run_time,
                    paused=bool(job.kwargs.get("paused")),
                    backlog=len(job.kwargs.get("backlog", [])),
                    last_run={"id": last[0].workflow_id, "status": last[0].status.value}
                    if last
                    else None,
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def schedule(self, name: str) -> ScheduleInfo:
        for info in self.schedules():
            if info.name == name:
                return info
        raise ScheduleNotFoundError(name)

    # ----------------------------------------------------------- timer wake-ups

    def schedule_wakeup(self, workflow_id: str, at: datetime) -> None:
        """Resume ``workflow_id`` at ``at``: the wake-up of a workflow in ``sleep``.

        For the events issue: a suspended workflow costs nothing until this date job
        fires, and the job is in the database, so it survives a restart.
        """
        self.scheduler.add_job(
            jobs.stored_job,
            trigger=DateTrigger(run_date=at),
            jobstore="default",
            id=jobs.job_id(jobs.WAKEUP, workflow_id),
            name=f"wake {workflow_id}",
            kwargs={"workflow_id": workflow_id},
            replace_existing=True,
        )

    def plan_wakeups(self) -> None:
        """Give every suspended workflow due before the next pass a wake-up job."""
        horizon = time.time() + 2 * self.recovery_interval
        for workflow_id, wake_at in self.store.due_wakeups(horizon):
            if self._planned_wakeups.get(workflow_id) != wake_at:
                self.schedule_wakeup(workflow_id, datetime.fromtimestamp(wake_at, timezone.utc))
                self._planned_wakeups[workflow_id] = wake_at

    def _wake(self, workflow_id: str) -> None:
        self._planned_wakeups.pop(workflow_id, None)
        try:
            self.launcher.watch(workflow_id, workflow.resume_async(workflow_id))
        except WorkflowError as error:
            log.info("Wake-up of %s skipped: %s", workflow_id, error)

    # ---------------------------------------------------------------- backfills

    def backfill(
        self,
        name: str,
        start: str,
        end: str,
        params: dict[str, Any] | None = None,
        *,
        max_active: int | None = None,
        reverse: bool = False,
        rerun_failed: bool = False,
        dry_run: bool = False,
        confirmed: bool = False,
    ) -> tuple[BackfillRecord | None, list[str]]:
        """Backfill ``name`` from ``start`` to ``end`` (dates or ISO date-times, both
        included): the backfill (None for a dry run) and the ids of the runs it will
        start, in order. The scheduler that has ``name`` registered runs it."""
        job = self._schedule_job(name)
        trigger = TriggerSpec(**{**job.kwargs["spec"], "at": None})
        if max_active is not None and (
            isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1
        ):
            raise InvalidBackfillError(f"max_active must be an integer >= 1, got {max_active!r}")
        schema = job.kwargs.get("params_schema")
        if params and schema:
            validate_params(schema, {**job.kwargs.get("params", {}), **params})
        ticks = plan(
            name,
            trigger,
            parse_moment(start, trigger.timezone, "start"),
            parse_moment(end, trigger.timezone, "end"),
            reverse=reverse,
            confirmed=confirmed,
        )
        if dry_run:
            return None, ticks.workflow_ids
        record = self.store.create_backfill(
            name,
            ticks.workflow_ids,
            ticks.ticks[0 if not reverse else -1].timestamp(),
            ticks.ticks[-1 if not reverse else 0].timestamp(),
            params or {},
            max_active,
            rerun_failed,
        )
        log.info("Backfill %s of %s: %d ticks", record.backfill_id, name, len(ticks.ticks))
        ids = [w for _, w, _ in self.store.backfill_ticks(record.backfill_id, ["queued", "rerun"])]
        return record, ids

    def backfills(self, name: str | None = None) -> list[BackfillRecord]:
        return self.store.list_backfills(name)

    def get_backfill(self, backfill_id: str) -> BackfillRecord:
        found = self.store.get_backfill(backfill_id)
        if found is None:
            raise BackfillNotFoundError(backfill_id)
        return found

    def change_backfill(self, backfill_id: str, action: str) -> BackfillRecord:
        """``pause``, ``unpause`` or ``cancel`` a backfill (cancel stops its runs too)."""
        sources, target = TRANSITIONS[action]
        current = self.get_backfill(backfill_id)
        if current.state not in sources:
            raise BackfillStateError(
                f"Backfill {backfill_id!r} is {current.state}; only a "
                f"{' or '.join(sources)} backfill can be {action}d"
                + (" (it has ended)" if current.state in FINISHED else "")
            )
        changed = self.store.set_backfill_state(backfill_id, target, sources)
        if changed is None:
            raise BackfillNotFoundError(backfill_id)
        return changed

    def params_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of ``name``'s params: as registered here, else as the job store
        keeps it for the process that registered it."""
        schedule = self.registry.find(name)
        if schedule is not None:
            return schedule.params_schema
        schema: dict[str, Any] = self._schedule_job(name).kwargs.get("params_schema") or {}
        return schema
