"""Starting a schedule's runs: build the DAG, submit it once per tick, count active runs.

A tick's workflow id is ``<name>@<logical date>``, and the executor's ``submit`` with
``if_exists="ignore"`` creates each id at most once: a tick fired twice (a restart, two
replicas) starts one run. A factory that raises still leaves a run, FAILED with the
factory's error, so the operator sees it on the dashboard instead of a silent gap.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import ray

from executor import workflow
from executor.errors import (
    CheckpointError,
    InvalidInputError,
    InvalidTypeError,
    NoFreeSlotError,
    WorkflowNotFoundError,
    WorkflowQueueFullError,
)
from executor.status import HOLDS_SLOT
from executor.store import Store
from executor.store.records import RunAlerts
from scheduler.errors import DagFactoryError, RunExistsError
from scheduler.loader import one_line
from scheduler.registry import Run, Schedule, run_id

log = logging.getLogger(__name__)

#: Triggers of runs nobody waits on: a factory error is recorded as a FAILED run, and a
#: run that exists already is a duplicate tick, not an error.
UNATTENDED = ("schedule", "backfill")
#: How stale the active-run counts may be before they are read again.
ACTIVE_SNAPSHOT_SECONDS = 0.5


@ray.remote(num_cpus=0, max_retries=0)
def factory_failed(name: str, error: str) -> None:
    """The one task of a run whose DAG factory raised."""
    raise DagFactoryError(f"The DAG factory of schedule {name!r} raised: {error}")


class ActiveRuns:
    """Active runs per schedule name, read in one query per snapshot (not one per tick),
    plus the runs this process started since: a snapshot read before their insert
    cannot show them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._snapshot: dict[str, set[str]] = {}
        self._taken_at = -math.inf
        #: name -> workflow id -> when its row was inserted (inf: not yet), monotonic.
        self._recent: dict[str, dict[str, float]] = defaultdict(dict)

    def count(self, name: str) -> int:
        with self._lock:
            now = time.monotonic()
            if now - self._taken_at > ACTIVE_SNAPSHOT_SECONDS:
                snapshot: dict[str, set[str]] = defaultdict(set)
                for record in self._store.list_workflows(statuses=list(HOLDS_SLOT)):
                    snapshot[record.name].add(record.workflow_id)
                self._snapshot, self._taken_at = snapshot, now
                for recent in self._recent.values():
                    for workflow_id in [w for w, at in recent.items() if at < now]:
                        del recent[workflow_id]  # the snapshot shows it, if still active
            return len(self._snapshot.get(name, set()) | self._recent[name].keys())

    def starting(self, name: str, workflow_ids: list[str]) -> None:
        with self._lock:
            for workflow_id in workflow_ids:
                self._recent[name][workflow_id] = math.inf

    def started(self, name: str, workflow_id: str) -> None:
        """The run's row is in the database (or its start failed)."""
        with self._lock:
            if workflow_id in self._recent[name]:
                self._recent[name][workflow_id] = time.monotonic()


class RunLauncher:
    #: Notifier URLs every run is created with (``gnomon up --notify``, ``$GNOMON_NOTIFY``).
    notify: tuple[str, ...] = ()
    #: Called with (schedule, workflow id, deadline) for a run created with a deadline.
    on_deadline: Callable[[Schedule, str, float], None] | None = None

    def __init__(self, store: Store) -> None:
        self.store = store
        self.active = ActiveRuns(store)
        self._refs: list[tuple[str, ray.ObjectRef]] = []
        self._refs_lock = threading.Lock()

    def exists(self, workflow_id: str) -> bool:
        try:
            self.store.get_workflow(workflow_id)
        except WorkflowNotFoundError:
            return False
        return True

    def launch(
        self,
        schedule: Schedule,
        logical_date: datetime,
        params: dict[str, Any] | None = None,
        trigger: str = "schedule",
        workflow_id: str | None = None,
    ) -> str | None:
        """Start one run and keep its ref until it ends; None for a duplicate tick."""
        started = self.start(schedule, logical_date, params, trigger, workflow_id)
        if started is None:
            return None
        self.watch(*started)
        log.info("Started %s (%s)", started[0], trigger)
        return started[0]

    def start(
        self,
        schedule: Schedule,
        logical_date: datetime,
        params: dict[str, Any] | None = None,
        trigger: str = "schedule",
        workflow_id: str | None = None,
        max_active: int | None = None,
    ) -> tuple[str, ray.ObjectRef] | None:
        """Submit one run; returns its id and output ref, or None if the id exists.

        A scheduled tick (or a backfill's) records a factory error (a raise, or a return
        that is not a DAG) as a FAILED run and skips an existing id as a duplicate tick; a
        manual trigger raises both.
        The factory runs before the existence check (which is the insert itself), so
        factories should only build the DAG: no side effects.
        A backfill's run takes one of ``max_active`` slots (None: no slot check).
        """
        run = schedule.make_run(logical_date, params, trigger, workflow_id)
        unattended = trigger in UNATTENDED
        try:
            dag = schedule.factory(run)
        except Exception as error:
            if not unattended:
                raise
            # The user's mistake: one line saying where, on the run and in the log.
            code = getattr(schedule.factory, "__code__", None)
            why = one_line(error, Path(code.co_filename) if code else None)
            log.warning("The DAG factory of %s raised %s", schedule.name, why)
            log.debug("The DAG factory of %s raised", schedule.name, exc_info=True)
            dag = factory_failed.bind(schedule.name, why)
        if trigger == "schedule" and schedule.trigger.kind != "date":
            max_active = schedule.max_active_runs
        elif trigger != "backfill":
            max_active = None
        # A tick's deadline counts from its logical date; a backfill's past ticks have
        # only their deadline after start.
        logical = run.logical_date.timestamp() if trigger != "backfill" else None
        alerts = schedule.alerts.run_alerts(self.notify, logical, time.time())
        try:
            ref = self._submit(schedule, run, dag, max_active, alerts)
        except (InvalidInputError, InvalidTypeError, CheckpointError) as error:
            # The factory returned something that is not a DAG, a DAG whose arguments do
            # not fit its functions, or one that cannot be stored.
            message = f"The DAG factory of {schedule.name!r} returned a bad DAG: {error}"
            if not unattended:
                raise DagFactoryError(message) from None
            log.warning("%s", message)
            failed: Any = factory_failed.bind(schedule.name, str(error))
            ref = self._submit(schedule, run, failed, max_active, alerts)
        if ref is None:
            self._duplicate(run.workflow_id, trigger)
            return None
        if alerts is not None and alerts.deadline_at is not None and self.on_deadline:
            self.on_deadline(schedule, run.workflow_id, alerts.deadline_at)
        return run.workflow_id, ref

    def _submit(
        self,
        schedule: Schedule,
        run: Run,
        dag: Any,
        max_active: int | None,
        alerts: RunAlerts | None,
    ) -> ray.ObjectRef | None:
        # A tick's slot is checked again in the insert: this process's count of active
        # runs cannot see what another replica started a moment ago.
        # A replica that inserted the same id first makes this a no-op (None): the insert
        # ignores a duplicate id.
        return workflow.submit(
            dag,
            (),
            {},
            workflow_id=run.workflow_id,
            metadata=schedule.run_metadata(run),
            code_version=schedule.code_version,
            name=schedule.name,
            trigger=run.trigger,
            if_exists="ignore",
            max_active=max_active,
            alerts=alerts,
            timeout_s=schedule.timeout_s,
            task_defaults=schedule.task_defaults(),
        )

    def _duplicate(self, workflow_id: str, trigger: str) -> None:
        if trigger not in UNATTENDED:
            raise RunExistsError(workflow_id)
        log.info("Run %s exists already; duplicate tick skipped", workflow_id)

    def launch_ticks(self, schedule: Schedule, logical_dates: list[datetime]) -> list[datetime]:
        """Start ticks oldest first; returns those that found every slot taken (by runs
        this process had not seen yet), to queue again. Errors are logged; they do not
        stop the later ticks."""
        waiting = []
        for logical_date in logical_dates:
            try:
                self.launch(schedule, logical_date)
            except (NoFreeSlotError, WorkflowQueueFullError):
                log.info("Tick %s of %s waits for a free slot", logical_date, schedule.name)
                waiting.append(logical_date)
            except Exception:
                log.exception("Could not start %s at %s", schedule.name, logical_date)
            finally:
                self.active.started(schedule.name, run_id(schedule.name, logical_date))
        return waiting

    # -------------------------------------------------------------- outcomes

    def watch(self, workflow_id: str, ref: ray.ObjectRef) -> None:
        """Keep a run's ref until it resolves, so its error is read (Ray logs an error
        that nobody ever read as 'unhandled')."""
        with self._refs_lock:
            self._refs.append((workflow_id, ref))

    def reap(self) -> int:
        """Read the refs that are ready; returns how many are still pending."""
        with self._refs_lock:
            refs, self._refs = self._refs, []
        if not refs:
            return 0
        ready, _ = ray.wait(
            [ref for _, ref in refs], num_returns=len(refs), timeout=0, fetch_local=False
        )
        done = set(ready)
        pending = []
        for workflow_id, ref in refs:
            if ref not in done:
                pending.append((workflow_id, ref))
                continue
            try:
                ray.get(ref, timeout=0)
            except Exception as error:
                log.info("Run %s ended: %s", workflow_id, one_line(error))
        with self._refs_lock:
            self._refs.extend(pending)
            return len(self._refs)
