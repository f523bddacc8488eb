"""``/healthz`` and ``/metrics``: runs by status, task durations, scheduler lag.

Metrics are read from the store when Prometheus scrapes. Task durations are a cumulative
histogram of the tasks of every run created since this process started watching, observed
once each when the run finishes, so the counters only grow, as Prometheus expects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from executor.errors import WorkflowNotFoundError
from executor.status import WorkflowStatus
from executor.store import SqlStore
from scheduler.registry import parse_logical_date
from web.errors import DatabaseUnavailable, http_error
from web.services import scheduler_service, store

bp = Blueprint("ops", __name__)

#: Statuses a run does not leave by itself.
FINISHED = frozenset({WorkflowStatus.SUCCESSFUL, WorkflowStatus.FAILED, WorkflowStatus.CANCELED})
#: Statuses read from live rows: RESUMABLE is a RUNNING or PENDING row whose owner is gone.
LIVE = (WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.RESUMABLE)
#: The most new runs one scrape looks at, and the most unfinished runs it keeps watching.
SCAN_LIMIT = 5_000
WATCH_LIMIT = 10_000
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


class TaskDurations:
    """Observes each task's duration once, when its run has finished."""

    def __init__(self, registry: CollectorRegistry, since: float) -> None:
        self.histogram = Histogram(
            "gnomon_task_duration_seconds",
            "Durations of finished tasks, by task function",
            ["name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._since = since
        self._watching: set[str] = set()
        self._lock = threading.Lock()

    def update(self, source: SqlStore) -> None:
        with self._lock:
            fresh, newest = self._new_runs(source)
            self._since = max(self._since, newest)
            for workflow_id in sorted(self._watching | fresh):
                try:
                    status = source.get_workflow(workflow_id).status
                except WorkflowNotFoundError:
                    self._watching.discard(workflow_id)
                    continue
                if status in FINISHED:
                    self._observe(source, workflow_id)
                    self._watching.discard(workflow_id)
                elif len(self._watching) < WATCH_LIMIT:
                    self._watching.add(workflow_id)

    def _new_runs(self, source: SqlStore) -> tuple[set[str], float]:
        fresh: set[str] = set()
        newest = self._since
        before = None
        while len(fresh) < SCAN_LIMIT:
            page = source.list_workflows(limit=500, before=before)
            for record in page:
                if record.created_at <= self._since:
                    return fresh, newest
                fresh.add(record.workflow_id)
                newest = max(newest, record.created_at)
            if len(page) < 500:
                break
            before = (page[-1].created_at, page[-1].workflow_id)
        return fresh, newest

    def _observe(self, source: SqlStore, workflow_id: str) -> None:
        for task in source.load_tasks(workflow_id):
            if task.started_at is not None and task.ended_at is not None:
                self.histogram.labels(task.name).observe(max(task.ended_at - task.started_at, 0))


class StoreCollector:
    """Gauges read from the store and the scheduler at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            source = store()
            counts = {status.value: 0 for status in WorkflowStatus}
            counts.update(source.count_by_status())
            for status in LIVE:
                counts[status.value] = 0
            for record in source.list_workflows(statuses=list(LIVE)):
                counts[record.status.value] += 1
            runs = GaugeMetricFamily("gnomon_workflows", "Workflows by status", labels=["status"])
            for label, count in sorted(counts.items()):
                runs.add_metric([label], count)
            yield runs
            yield from _notifications(source)
            yield from self._controls(source)
            yield from self._scheduler(source)

    def _controls(self, source: SqlStore) -> Iterator[Metric]:
        """Pools' slots and lines; task timeouts and retries, counted by the store."""
        labels = ["pool"]
        slots = GaugeMetricFamily("gnomon_pool_slots", "A pool's slots", labels=labels)
        used = GaugeMetricFamily("gnomon_pool_slots_used", "A pool's slots held", labels=labels)
        queued = GaugeMetricFamily(
            "gnomon_pool_queued", "Tasks waiting for a slot of a pool", labels=labels
        )
        for pool in source.list_pools():
            slots.add_metric([pool.name], pool.slots)
            used.add_metric([pool.name], pool.used)
            queued.add_metric([pool.name], pool.queued)
        yield from (slots, used, queued)
        counts = source.counters()
        for name, text in (
            ("task_timeouts", "Task attempts stopped for running past their timeout_s"),
            ("task_retries", "Failed task attempts that were tried again"),
        ):
            yield CounterMetricFamily(f"gnomon_{name}", text, value=counts.get(name, 0))

    def _scheduler(self, source: SqlStore) -> Iterator[Metric]:
        service = scheduler_service()
        if service is None:
            return
        now = time.time()
        overdue = GaugeMetricFamily(
            "gnomon_scheduler_lag_seconds",
            "How long an unpaused schedule's next run is overdue (0 when on time)",
            labels=["schedule"],
        )
        start_delay = GaugeMetricFamily(
            "gnomon_schedule_start_delay_seconds",
            "Seconds between the latest scheduled run's logical date and its start",
            labels=["schedule"],
        )
        paused = GaugeMetricFamily("gnomon_schedule_paused", "1 if paused", labels=["schedule"])
        for info in service.schedules():
            due = info.next_run_at.timestamp() if info.next_run_at else now
            lag = 0.0 if info.paused else max(now - due, 0.0)
            overdue.add_metric([info.name], lag)
            paused.add_metric([info.name], 1.0 if info.paused else 0.0)
            delay = _start_delay(source, info.last_run)
            if delay is not None:
                start_delay.add_metric([info.name], delay)
        yield overdue
        yield start_delay
        yield paused


def _notifications(source: SqlStore) -> Iterator[Metric]:
    """The outbox: notifications by delivery state, and every failed delivery attempt."""
    counts, failures = source.notification_stats()
    states = GaugeMetricFamily(
        "gnomon_notifications", "Notifications by delivery state", labels=["state"]
    )
    for state in ("pending", "delivered", "failed"):
        states.add_metric([state], counts.get(state, 0))
    yield states
    yield CounterMetricFamily(
        "gnomon_notification_failures", "Failed notification delivery attempts", value=failures
    )


def _start_delay(source: SqlStore, last_run: dict[str, Any] | None) -> float | None:
    if not last_run or "@" not in last_run["id"]:
        return None
    try:
        record = source.get_workflow(last_run["id"])
        logical = parse_logical_date(last_run["id"].rsplit("@", 1)[1])
    except (WorkflowNotFoundError, ValueError):
        return None
    if record.trigger != "schedule":
        return None
    return max(record.created_at - logical.timestamp(), 0.0)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the database answers; 503 while it does not, so a load balancer or an
    orchestrator takes this replica out of rotation until it does again."""
    try:
        store().ping()
    except Exception as error:
        if not isinstance(http_error(error), DatabaseUnavailable):
            raise
        response = jsonify(ok=False, database="unavailable")
        response.status_code = DatabaseUnavailable.status
        response.headers["Retry-After"] = str(DatabaseUnavailable.RETRY_SECONDS)
        return response
    return jsonify(ok=True)


@bp.get("/metrics")
def metrics() -> Response:
    durations: TaskDurations = current_app.extensions["gnomon.task_durations"]
    durations.update(store())
    registry: CollectorRegistry = current_app.extensions["gnomon.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Each app gets its own registry, so two apps in one process never clash."""
    registry = CollectorRegistry(auto_describe=True)
    app.extensions["gnomon.task_durations"] = TaskDurations(registry, since=time.time())
    registry.register(StoreCollector(app))  # type: ignore[arg-type]
    app.extensions["gnomon.metrics"] = registry
    app.register_blueprint(bp)
