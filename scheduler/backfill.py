"""Backfills: a schedule's ticks over a range of dates, as one operation an operator can
list, pause, cancel and watch.

A backfill makes one run per tick in the range, with the usual ids ``<name>@<tick>`` and
trigger ``backfill``; ticks that have a run already are skipped, or resumed when they
FAILED and the backfill reruns failed ones. Runs start as slots free up: the schedule's
``max_active_runs`` (shared with its ticks, checked in each run's insert), or the
backfill's own ``max_active``. A paused schedule's backfill runs: pausing stops the
timer, not an operator's explicit actions.

The scheduler that has the schedule registered drives it, in its housekeeping pass,
holding a lease on it so that replicas never start its ticks twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from executor import workflow
from executor.errors import NoFreeSlotError, WorkflowError, WorkflowQueueFullError, one_line
from executor.store import Store
from executor.store.backfills import CANCELED, CANCELING, DONE, QUEUED, RERUN, SKIPPED, STARTED
from executor.store.leases import LEASE_TTL, owner_id
from executor.store.records import BackfillRecord
from scheduler.errors import InvalidBackfillError
from scheduler.registry import Registry, Schedule, parse_logical_date, run_id
from scheduler.runs import RunLauncher
from scheduler.triggers import TriggerSpec, fire_times

log = logging.getLogger(__name__)

#: A backfill of more ticks than this needs ``--yes``.
CONFIRM_TICKS = 10_000
#: And none may have more than this.
MAX_TICKS = 100_000


@dataclass(frozen=True)
class BackfillPlan:
    """The ticks of a backfill, in the order they are to start."""

    name: str
    start: datetime
    end: datetime
    ticks: list[datetime]

    @property
    def workflow_ids(self) -> list[str]:
        return [run_id(self.name, tick) for tick in self.ticks]


def parse_moment(text: str, zone: str, what: str) -> datetime:
    """``2026-01-31`` (midnight in the schedule's time zone) or an ISO-8601 date-time."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        raise InvalidBackfillError(
            f"The backfill's {what} {text!r} is not a date (2026-01-31) or an ISO date-time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def plan(
    name: str,
    trigger: TriggerSpec,
    start: datetime,
    end: datetime,
    *,
    reverse: bool = False,
    confirmed: bool = False,
) -> BackfillPlan:
    """The ticks of ``trigger`` from ``start`` to ``end``, both included."""
    if trigger.kind not in ("cron", "interval"):
        raise InvalidBackfillError(
            f"Schedule {name!r} has no ticks to backfill: it runs {trigger.describe()}"
        )
    if end < start:
        raise InvalidBackfillError(
            f"The backfill's end {end.isoformat()} is before its start {start.isoformat()}"
        )
    ticks = fire_times(
        trigger.build(),
        start.astimezone(timezone.utc) - timedelta(microseconds=1),
        end.astimezone(timezone.utc),
        limit=MAX_TICKS + 1,
    )
    if len(ticks) > MAX_TICKS:
        raise InvalidBackfillError(f"The backfill has over {MAX_TICKS:,} ticks; split the range")
    if len(ticks) > CONFIRM_TICKS and not confirmed:
        raise InvalidBackfillError(
            f"The backfill has {len(ticks):,} ticks (over {CONFIRM_TICKS:,}); confirm with --yes"
        )
    if not ticks:
        raise InvalidBackfillError(
            f"Schedule {name!r} has no ticks from {start.isoformat()} to {end.isoformat()}"
        )
    return BackfillPlan(name, start, end, ticks[::-1] if reverse else ticks)


class BackfillDriver:
    """Starts the ticks of the backfills of the schedules registered here."""

    def __init__(
        self, store: Store, registry: Registry, launcher: RunLauncher, pool: ThreadPoolExecutor
    ) -> None:
        self._store = store
        self._registry = registry
        self._launcher = launcher
        self._pool = pool
        self.owner = owner_id("backfills")
        self._driving: set[str] = set()
        self._lock = threading.Lock()

    def drive(self) -> None:
        """One pass (housekeeping): take the backfills to drive, start what fits."""
        for record in self._store.claim_backfills(self.owner, self._registry.names(), LEASE_TTL):
            with self._lock:
                if record.backfill_id in self._driving:
                    continue
                self._driving.add(record.backfill_id)
            self._pool.submit(self._drive_one, record)

    def _drive_one(self, record: BackfillRecord) -> None:
        try:
            self._drive(record)
        except Exception:
            log.exception("Could not drive backfill %s", record.backfill_id)
        finally:
            with self._lock:
                self._driving.discard(record.backfill_id)

    def _drive(self, record: BackfillRecord) -> None:
        schedule = self._registry.find(record.name)
        if schedule is None:
            return
        if record.state == CANCELING:
            for workflow_id in self._store.backfill_active(record.backfill_id):
                try:
                    workflow.cancel(workflow_id)
                except WorkflowError as error:
                    log.info("Cancel of %s skipped: %s", workflow_id, one_line(error))
            self._store.set_backfill_state(record.backfill_id, CANCELED, [CANCELING])
            log.info("Backfill %s canceled", record.backfill_id)
            return
        if record.max_active is not None:
            free = record.max_active - len(self._store.backfill_active(record.backfill_id))
        else:
            free = schedule.max_active_runs - self._launcher.active.count(schedule.name)
        if free > 0:
            for seq, workflow_id, state in self._store.backfill_ticks(
                record.backfill_id, [QUEUED, RERUN], free
            ):
                if not self._start(record, schedule, seq, workflow_id, state):
                    break
        ended = not self._store.backfill_ticks(record.backfill_id, [QUEUED, RERUN], 1)
        if ended and not self._store.backfill_active(record.backfill_id):
            self._store.set_backfill_state(record.backfill_id, DONE, ["running"])
            log.info("Backfill %s done", record.backfill_id)

    def _start(
        self, record: BackfillRecord, schedule: Schedule, seq: int, workflow_id: str, state: str
    ) -> bool:
        """Start one tick; False when no slot was free after all (try again later)."""
        if state == RERUN:
            try:
                self._launcher.watch(workflow_id, workflow.resume_async(workflow_id))
            except WorkflowError as error:
                log.info("Backfill rerun of %s skipped: %s", workflow_id, one_line(error))
            self._store.backfill_tick_done(record.backfill_id, seq, STARTED)
            return True
        logical = parse_logical_date(workflow_id.rsplit("@", 1)[1])
        shared_slots = schedule.max_active_runs if record.max_active is None else None
        self._launcher.active.starting(schedule.name, [workflow_id])
        try:
            started = self._launcher.start(
                schedule, logical, record.params, "backfill", workflow_id, max_active=shared_slots
            )
        except (NoFreeSlotError, WorkflowQueueFullError):
            return False
        finally:
            self._launcher.active.started(schedule.name, workflow_id)
        if started is None:  # a tick's run appeared meanwhile
            self._store.backfill_tick_done(record.backfill_id, seq, SKIPPED)
            return True
        self._launcher.watch(*started)
        self._store.backfill_tick_done(record.backfill_id, seq, STARTED)
        log.info("Backfill %s started %s", record.backfill_id, workflow_id)
        return True


#: What each operator action on a backfill moves it from, and to.
TRANSITIONS = {
    "pause": (("running",), "paused"),
    "unpause": (("paused",), "running"),
    "cancel": (("running", "paused"), CANCELING),
}
#: States a backfill is finished in.
FINISHED = (CANCELED, DONE)
