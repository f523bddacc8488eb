"""Registered workflows: ``@scheduler.register`` turns a DAG factory into a schedule.

@scheduler.register(cron="0 3 * * *", timezone="UTC")
def nightly_etl(run):
    return load.bind(transform.bind(extract.bind(run.logical_date.date().isoformat())))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from scheduler.errors import DuplicateScheduleError, InvalidScheduleError, ScheduleNotFoundError
from scheduler.triggers import TriggerSpec

#: Names end up in workflow ids (``<name>@<date>``) and job ids, which have length limits.
MAX_NAME_LENGTH = 100

Factory = Callable[["Run"], Any]


def format_logical_date(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; microseconds only when there are some."""
    moment = moment.astimezone(timezone.utc)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(pattern)


def parse_logical_date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def run_id(name: str, logical_date: datetime) -> str:
    """The workflow id of a schedule's run: ``nightly_etl@2026-11-25T03:00:00Z``."""
    return f"{name}@{format_logical_date(logical_date)}"


@dataclass(frozen=True)
class Run:
    """What a factory is given: the run's name, logical date (aware, UTC) and params."""

    name: str
    logical_date: datetime
    params: dict[str, Any]
    workflow_id: str
    #: "schedule" for a tick; "manual" or "api" for a trigger by hand.
    trigger: str = "schedule"


@dataclass(frozen=True)
class Schedule:
    name: str
    factory: Factory
    trigger: TriggerSpec
    params: dict[str, Any] = field(default_factory=dict)
    catchup: bool = False
    max_active_runs: int = 1
    paused: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        # A callable object or a functools.partial has no __qualname__.
        qualname = getattr(self.factory, "__qualname__", None) or repr(self.factory)
        return f"{getattr(self.factory, '__module__', '?')}.{qualname}"

    def make_run(
        self,
        logical_date: datetime,
        params: dict[str, Any] | None = None,
        trigger: str = "schedule",
        workflow_id: str | None = None,
    ) -> Run:
        """A run of this schedule; ``params`` are merged over the schedule's defaults."""
        logical_date = logical_date.astimezone(timezone.utc)
        return Run(
            name=self.name,
            logical_date=logical_date,
            params={**self.params, **(params or {})},
            workflow_id=workflow_id or run_id(self.name, logical_date),
            trigger=trigger,
        )


class Registry:
    """Schedules by name. ``scheduler.register`` adds to the active registry, which is the
    process-wide ``REGISTRY`` unless a loader is collecting one file's schedules."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}
        #: dags file path -> one-line import error, for the log and the dashboard.
        self.import_errors: dict[str, str] = {}

    def register(
        self,
        factory: Factory | None = None,
        *,
        cron: str | None = None,
        timezone: str = "UTC",
        interval: float | timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        catchup: bool = False,
        max_active_runs: int = 1,
        paused: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """Register ``factory(run) -> DAG``; usable as ``@register`` or ``@register(...)``."""
        trigger = TriggerSpec.parse(cron=cron, interval=interval, at=at, timezone=timezone)

        def decorate(func: Factory) -> Factory:
            if not callable(func):
                raise InvalidScheduleError(f"register() decorates a function, got {func!r}")
            schedule = Schedule(
                name=_check_name(name or func.__name__),
                factory=func,
                trigger=trigger,
                params=_check_json("params", params),
                catchup=bool(catchup),
                max_active_runs=_check_max_active(max_active_runs),
                paused=bool(paused),
                metadata=_check_json("metadata", metadata),
            )
            self.add(schedule)
            func.gnomon_schedule = schedule  # type: ignore[attr-defined]
            return func

        return decorate(factory) if factory is not None else decorate

    def add(self, schedule: Schedule) -> None:
        """Add or replace; a second factory under a taken name is an error."""
        existing = self._schedules.get(schedule.name)
        if existing is not None and existing.source != schedule.source:
            raise DuplicateScheduleError(schedule.name, existing.source, schedule.source)
        self._schedules[schedule.name] = schedule

    def merge(self, other: Registry) -> None:
        """Add all of ``other`` or, if one name is taken by another factory, none of it."""
        for schedule in other:
            existing = self._schedules.get(schedule.name)
            if existing is not None and existing.source != schedule.source:
                raise DuplicateScheduleError(schedule.name, existing.source, schedule.source)
        for schedule in other:
            self.add(schedule)

    def get(self, name: str) -> Schedule:
        try:
            return self._schedules[name]
        except KeyError:
            raise ScheduleNotFoundError(name) from None

    def find(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def names(self) -> list[str]:
        return sorted(self._schedules)

    def __iter__(self) -> Iterator[Schedule]:
        return iter(list(self._schedules.values()))

    def __len__(self) -> int:
        return len(self._schedules)

    def __contains__(self, name: object) -> bool:
        return name in self._schedules

    @contextmanager
    def collecting(self) -> Iterator[Registry]:
        """Make ``scheduler.register`` add to this registry inside the block."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)


#: The process-wide registry that ``gnomon up`` schedules.
REGISTRY = Registry()
_active: ContextVar[Registry] = ContextVar("gnomon_registry", default=REGISTRY)


def register(factory: Factory | None = None, **options: Any) -> Any:
    """Register a DAG factory with the active registry; see ``Registry.register``."""
    return _active.get().register(factory, **options)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidScheduleError(
            f"A schedule name must be 1 to {MAX_NAME_LENGTH} characters, got {name!r}"
        )
    # '/' would make the name unreachable in URLs (/api/v1/schedules/<name>/trigger), and
    # PostgreSQL refuses a NUL in the job store's id.
    if "@" in name or "/" in name or not name.isprintable() or " " in name:
        raise InvalidScheduleError(
            f"A schedule name cannot contain '@', '/', spaces or control characters: {name!r}"
        )
    return name


def _check_json(what: str, value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidScheduleError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)  # NaN would make the API's JSON invalid
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidScheduleError(f"{what} must be JSON-serializable: {error}") from None
    return dict(value)


def _check_max_active(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidScheduleError(f"max_active_runs must be an integer >= 1, got {value!r}")
    return value
