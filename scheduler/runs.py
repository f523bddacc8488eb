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
from scheduler.errors import DagFactoryError, RunExistsError
from scheduler.loader import one_line
from scheduler.registry import Run, Schedule, format_logical_date, run_id

log = logging.getLogger(__name__)

#: How stale the active-run counts may be before they are read again.
ACTIVE_SNAPSHOT_SECONDS = 0.5


@ray.remote(num_cpus=0, max_retries=0)
def factory_failed(name: str, error: str) -> None:
    """The one task of a run whose DAG factory raised."""
    raise DagFactoryError(f"The DAG factory of schedule {name!r} raised: {error}")


def run_metadata(schedule: Schedule, run: Run) -> dict[str, Any]:
    """A run's metadata: the schedule's, plus the schedule name, logical date and params."""
    return {
        **schedule.metadata,
        "schedule": schedule.name,
        "logical_date": format_logical_date(run.logical_date),
        "params": run.params,
    }


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
    ) -> tuple[str, ray.ObjectRef] | None:
        """Submit one run; returns its id and output ref, or None if the id exists.

        A scheduled tick records a factory error (a raise, or a return that is not a DAG)
        as a FAILED run and skips an existing id as a duplicate tick; a manual trigger
        (``trigger != "schedule"``) raises both.
        The factory runs before the existence check (which is the insert itself), so
        factories should only build the DAG: no side effects.
        """
        run = schedule.make_run(logical_date, params, trigger, workflow_id)
        try:
            dag = schedule.factory(run)
        except Exception as error:
            if trigger != "schedule":
                raise
            # The user's mistake: one line saying where, on the run and in the log.
            code = getattr(schedule.factory, "__code__", None)
            why = one_line(error, Path(code.co_filename) if code else None)
            log.warning("The DAG factory of %s raised %s", schedule.name, why)
            log.debug("The DAG factory of %s raised", schedule.name, exc_info=True)
            dag = factory_failed.bind(schedule.name, why)
        try:
            ref = self._submit(schedule, run, dag)
        except (InvalidInputError, InvalidTypeError, CheckpointError) as error:
            # The factory returned something that is not a DAG, a DAG whose arguments do
            # not fit its functions, or one that cannot be stored.
            message = f"The DAG factory of {schedule.name!r} returned a bad DAG: {error}"
            if trigger != "schedule":
                raise DagFactoryError(message) from None
            log.warning("%s", message)
            ref = self._submit(schedule, run, factory_failed.bind(schedule.name, str(error)))
        if ref is None:
            self._duplicate(run.workflow_id, trigger)
            return None
        return run.workflow_id, ref

    def _submit(self, schedule: Schedule, run: Run, dag: Any) -> ray.ObjectRef | None:
        # A tick's slot is checked again in the insert: this process's count of active
        # runs cannot see what another replica started a moment ago.
        limited = run.trigger == "schedule" and schedule.trigger.kind != "date"
        # A replica that inserted the same id first makes this a no-op (None): the insert
        # ignores a duplicate id.
        return workflow.submit(
            dag,
            (),
            {},
            workflow_id=run.workflow_id,
            metadata=run_metadata(schedule, run),
            name=schedule.name,
            trigger=run.trigger,
            if_exists="ignore",
            max_active=schedule.max_active_runs if limited else None,
        )

    def _duplicate(self, workflow_id: str, trigger: str) -> None:
        if trigger != "schedule":
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
