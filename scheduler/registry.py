"""Registered workflows: ``@scheduler.register`` turns a DAG factory into a schedule.

@scheduler.register(cron="0 3 * * *", timezone="UTC")
def nightly_etl(run):
    return load.bind(transform.bind(extract.bind(run.logical_date.date().isoformat())))
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from executor.errors import (
    InvalidInputError,
    InvalidTypeError,
    WorkflowNotRetryableError,
    one_line,
)
from executor.options import check_timeout
from executor.pools import check_pool_name, check_priority
from executor.rerun import set_rebuilder
from executor.store import WorkflowRecord
from scheduler.alerts import Alerts
from scheduler.errors import DuplicateScheduleError, InvalidScheduleError, ScheduleNotFoundError
from scheduler.params import schedule_schema, validate_params
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
    #: Notifications and deadlines (``scheduler.alerts``).
    alerts: Alerts = field(default_factory=Alerts)
    #: The JSON Schema every run's params must match (given, or inferred from ``params``).
    params_schema: dict[str, Any] = field(default_factory=dict)
    #: A digest of the dags file that defined the factory, as it was when it registered
    #: (``source_version``): the version of the code this schedule runs.
    code_version: str | None = None
    #: Seconds each run may take before it is stopped and FAILED.
    timeout_s: float | None = None
    #: The concurrency pool, and priority in it, of every task that names none itself.
    pool: str | None = None
    priority: int = 0

    def task_defaults(self) -> dict[str, Any]:
        """Workflow options its runs' tasks take unless they give their own."""
        defaults: dict[str, Any] = {"pool": self.pool} if self.pool else {}
        if self.priority:
            defaults["priority"] = self.priority
        return defaults

    def run_metadata(self, run: Run) -> dict[str, Any]:
        """A run's metadata: the schedule's, plus its name, logical date and params (what
        ``Registry.rebuild`` needs to build the run's graph again)."""
        return {
            **self.metadata,
            "schedule": self.name,
            "logical_date": format_logical_date(run.logical_date),
            "params": run.params,
        }

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
        """A run of this schedule; ``params`` are merged over the schedule's defaults and
        must match its ``params_schema`` (``InvalidParamsError``)."""
        logical_date = logical_date.astimezone(timezone.utc)
        merged = {**self.params, **(params or {})}
        if params and self.params_schema:
            validate_params(self.params_schema, merged)
        return Run(
            name=self.name,
            logical_date=logical_date,
            params=merged,
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
        notify: list[str] | str | None = None,
        on_failure: Callable[[Any], Any] | None = None,
        on_success: Callable[[Any], Any] | None = None,
        on_retry: Callable[[Any], Any] | None = None,
        deadline: float | timedelta | None = None,
        deadline_after_start: float | timedelta | None = None,
        params_schema: dict[str, Any] | None = None,
        timeout_s: float | timedelta | None = None,
        pool: str | None = None,
        priority: int = 0,
    ) -> Any:
        """Register ``factory(run) -> DAG``; usable as ``@register`` or ``@register(...)``.

        ``notify``, ``on_failure``, ``on_success``, ``on_retry``, ``deadline`` and
        ``deadline_after_start``: see ``scheduler.alerts``; ``params_schema``: see
        ``scheduler.params``."""
        trigger = TriggerSpec.parse(cron=cron, interval=interval, at=at, timezone=timezone)
        alerts = Alerts.parse(
            notify, on_failure, on_success, on_retry, deadline, deadline_after_start
        )
        checked_params = _check_json("params", params)
        schema = schedule_schema(checked_params, params_schema)
        controls = _check_controls(timeout_s, pool, priority)

        def decorate(func: Factory) -> Factory:
            if not callable(func):
                raise InvalidScheduleError(f"register() decorates a function, got {func!r}")
            schedule = Schedule(
                name=_check_name(name or func.__name__),
                factory=func,
                trigger=trigger,
                params=checked_params,
                catchup=bool(catchup),
                max_active_runs=_check_max_active(max_active_runs),
                paused=bool(paused),
                metadata=_check_json("metadata", metadata),
                alerts=alerts,
                params_schema=schema,
                code_version=source_version(func),
                **controls,
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

    def remove(self, name: str) -> None:
        """Forget a schedule (its runs stay)."""
        if self._schedules.pop(name, None) is None:
            raise ScheduleNotFoundError(name)

    def rebuild(
        self, record: WorkflowRecord, params: dict[str, Any]
    ) -> tuple[Any, str | None, dict[str, Any]]:
        """A registered run's DAG built again with the factory as loaded now, the
        recorded logical date and the recorded params updated by ``params``; with its
        code version and metadata (``executor.rerun.Rebuild``)."""
        name = record.user_metadata.get("schedule")
        if not isinstance(name, str):
            raise WorkflowNotRetryableError(
                record.workflow_id, "it was not started from a registered workflow"
            )
        schedule = self.find(name)
        if schedule is None:
            raise WorkflowNotRetryableError(
                record.workflow_id, f"registered workflow {name!r} is not loaded any more"
            )
        recorded = record.user_metadata.get("params") or {}
        run = Run(
            name=name,
            logical_date=parse_logical_date(str(record.user_metadata["logical_date"])),
            params={**recorded, **params},
            workflow_id=record.workflow_id,
            trigger=record.trigger,
        )
        try:
            dag = schedule.factory(run)
        except Exception as error:
            raise WorkflowNotRetryableError(
                record.workflow_id, f"the DAG factory of {name!r} raised {one_line(error)}"
            ) from None
        return dag, schedule.code_version, schedule.run_metadata(run)

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
set_rebuilder(REGISTRY.rebuild)
_active: ContextVar[Registry] = ContextVar("gnomon_registry", default=REGISTRY)


def register(factory: Factory | None = None, **options: Any) -> Any:
    """Register a DAG factory with the active registry; see ``Registry.register``."""
    return _active.get().register(factory, **options)


_versions: dict[tuple[str, int, int], str] = {}


def source_version(func: Callable[..., Any]) -> str | None:
    """The first 12 hex digits of the SHA-1 of the file that defines ``func`` (read again
    only when the file changed); None where there is no such file."""
    try:
        path = inspect.getsourcefile(func)
        if path is None:
            return None
        info = os.stat(path)
        stamp = (path, info.st_mtime_ns, info.st_size)
        version = _versions.get(stamp)
        if version is None:
            with open(path, "rb") as handle:
                version = hashlib.sha1(handle.read()).hexdigest()[:12]
            _versions[stamp] = version
        return version
    except (OSError, TypeError):
        return None


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


def _check_controls(
    timeout_s: float | timedelta | None, pool: str | None, priority: int
) -> dict[str, Any]:
    """``timeout_s``, ``pool`` and ``priority`` as a schedule keeps them, or a one-line
    ``InvalidScheduleError``."""
    if isinstance(timeout_s, timedelta):
        timeout_s = timeout_s.total_seconds()
    try:
        return {
            "timeout_s": None if timeout_s is None else check_timeout("timeout_s", timeout_s),
            "pool": None if pool is None else check_pool_name(pool),
            "priority": check_priority(priority),
        }
    except (InvalidInputError, InvalidTypeError) as error:
        raise InvalidScheduleError(error.message) from None


def _check_max_active(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidScheduleError(f"max_active_runs must be an integer >= 1, got {value!r}")
    return value
