"""Backfills on real Ray, SQLite and PostgreSQL: one run per tick with the usual ids,
paced by max_active_runs (seen from the tasks themselves), skipping or rerunning ticks
that have runs, running while the schedule is paused; and the refusals."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import ray

from executor.status import WorkflowStatus
from scheduler.errors import BackfillStateError, InvalidBackfillError
from scheduler.registry import format_logical_date, run_id
from tests.waiting import eventually


@ray.remote
def occupy(marks: str, logical: str) -> str:
    """Note when it ran, from the task's side: ``start end`` in a file of its own."""
    started = time.time()
    time.sleep(0.3)
    Path(marks, logical.replace(":", "-")).write_text(f"{started} {time.time()}")
    return logical


def most_at_once(marks: Path) -> int:
    spans = [tuple(map(float, p.read_text().split())) for p in marks.iterdir()]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def register_daily(registry, name, marks, **options):
    registry.register(
        lambda run: occupy.bind(str(marks), format_logical_date(run.logical_date)),
        name=name,
        cron="0 0 * * *",
        paused=True,
        **options,
    )


def test_thirty_daily_ticks_three_at_a_time_all_succeed(services, registry, name, marks, store):
    register_daily(registry, name, marks, max_active_runs=3)
    service = services(registry)

    record, runs = service.backfill(name, "2026-01-01", "2026-01-30")

    assert len(runs) == 30
    assert runs[0] == f"{name}@2026-01-01T00:00:00Z"
    done = eventually(
        lambda: (b := service.get_backfill(record.backfill_id)).state == "done" and b,
        timeout=120,
        what="the backfill's end",
    )
    assert done.progress.done == 30
    assert done.progress.failed == 0
    records = store.list_workflows(name=name)
    assert sorted(r.workflow_id for r in records) == sorted(runs)
    assert {r.status for r in records} == {WorkflowStatus.SUCCESSFUL}
    assert {r.trigger for r in records} == {"backfill"}
    assert len(os.listdir(marks)) == 30
    assert most_at_once(marks) <= 3


def test_existing_runs_are_skipped_or_rerun_and_its_own_limit_paces_it(
    services, registry, name, marks, store
):
    register_daily(registry, name, marks, max_active_runs=5)
    service = services(registry)
    first, _ = service.backfill(name, "2026-02-01", "2026-02-02", max_active=1)
    eventually(lambda: service.get_backfill(first.backfill_id).state == "done", timeout=60)

    second, runs = service.backfill(name, "2026-02-01", "2026-02-04", reverse=True, max_active=1)

    assert runs == [f"{name}@2026-02-04T00:00:00Z", f"{name}@2026-02-03T00:00:00Z"]
    assert second.progress.skipped == 2
    eventually(lambda: service.get_backfill(second.backfill_id).state == "done", timeout=60)
    assert most_at_once(marks) == 1
    assert len(store.list_workflows(name=name)) == 4


def test_a_paused_backfill_starts_nothing_until_unpaused_and_a_cancel_ends_it(
    services, registry, name, marks, store
):
    register_daily(registry, name, marks)
    service = services(registry, start=False)  # nothing drives it yet
    service.sync()
    record, _ = service.backfill(name, "2026-03-01", "2026-03-03")
    assert service.change_backfill(record.backfill_id, "pause").state == "paused"
    with pytest.raises(
        BackfillStateError, match="is paused; only a running backfill can be paused"
    ):
        service.change_backfill(record.backfill_id, "pause")
    service.start()

    canceled = service.change_backfill(record.backfill_id, "cancel")

    assert canceled.state == "canceling"
    eventually(lambda: service.get_backfill(record.backfill_id).state == "canceled", timeout=30)
    assert store.list_workflows(name=name) == []
    with pytest.raises(BackfillStateError, match="it has ended"):
        service.change_backfill(record.backfill_id, "unpause")


def test_a_dry_run_lists_the_runs_and_starts_none(services, registry, name, marks, store):
    register_daily(registry, name, marks)
    service = services(registry, start=False)
    service.sync()

    record, runs = service.backfill(name, "2026-01-01T00:00:00Z", "2026-01-03", dry_run=True)

    assert record is None
    assert runs == [run_id(name, t) for t in _days("2026-01-01", "2026-01-03")]
    assert service.backfills(name) == []


def _days(first: str, last: str):
    from datetime import datetime, timedelta, timezone

    day = datetime.fromisoformat(first).replace(tzinfo=timezone.utc)
    end = datetime.fromisoformat(last).replace(tzinfo=timezone.utc)
    while day <= end:
        yield day
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("start", "end", "options", "message"),
    [
        ("2026-01-31", "2026-01-01", {}, "is before its start"),
        ("2026-01-01", "2026-13-01", {}, "is not a date"),
        ("1990-01-01", "2026-01-01", {}, "ticks .over 10,000.; confirm with --yes"),
        ("2026-01-01", "2026-01-02", {"max_active": 0}, "max_active must be an integer >= 1"),
    ],
)
def test_bad_backfills_are_refused_in_one_line(
    services, registry, name, marks, start, end, options, message
):
    register_daily(registry, name, marks)
    service = services(registry, start=False)
    service.sync()

    with pytest.raises(InvalidBackfillError, match=message) as refused:
        service.backfill(name, start, end, **options)

    assert "\n" not in str(refused.value)
    assert service.backfills(name) == []


def test_a_schedule_without_ticks_has_nothing_to_backfill(services, registry, name):
    registry.register(lambda run: occupy.bind(".", "x"), name=name)
    service = services(registry, start=False)
    service.sync()

    with pytest.raises(InvalidBackfillError, match="has no ticks to backfill: it runs manual"):
        service.backfill(name, "2026-01-01", "2026-01-02")
