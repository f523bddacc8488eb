"""The scheduler service on real APScheduler, Ray, SQLite and PostgreSQL: ticks, one-offs,
manual triggers, pause, duplicate ticks, factory errors and restarts."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import ray
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from executor.status import WorkflowStatus
from scheduler import jobs
from scheduler.errors import RunExistsError, ScheduleNotFoundError
from scheduler.registry import Registry, format_logical_date, parse_logical_date, run_id
from scheduler.service import SchedulerService
from tests.waiting import count, eventually, mark

UTC = timezone.utc
OK = WorkflowStatus.SUCCESSFUL


@ray.remote
def stamp(logical: str, params: dict, marks: str) -> dict:
    mark(marks, logical)
    return {"logical": logical, "params": params}


def stamping(marks):
    def factory(run):
        return stamp.bind(format_logical_date(run.logical_date), run.params, str(marks))

    return factory


def finished(store, name, at_least):
    records = [r for r in store.list_workflows(name=name) if r.status == OK]
    return records if len(records) >= at_least else None


def passes(service: SchedulerService, job_id: str) -> Callable[[], int]:
    """Counts the runs of one of ``service``'s own jobs from now on."""
    ran: list[JobExecutionEvent] = []

    def on_executed(event: JobExecutionEvent) -> None:
        if event.job_id == job_id:
            ran.append(event)

    service.scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    return lambda: len(ran)


def test_interval_ticks_run_with_their_logical_dates(
    workflow, services, registry, name, marks, store
):
    registry.register(
        stamping(marks),
        name=name,
        interval=1,
        params={"p": 1},
        max_active_runs=3,
        metadata={"team": "data"},
    )
    services(registry)

    records = eventually(lambda: finished(store, name, 3), timeout=30, what="three ticks")

    for record in records:
        logical = record.workflow_id.split("@", 1)[1]
        assert record.workflow_id == run_id(name, parse_logical_date(logical))
        assert parse_logical_date(logical).microsecond == 0  # on the interval's boundaries
        assert record.trigger == "schedule"
        assert record.user_metadata == {
            "team": "data",
            "schedule": name,
            "logical_date": logical,
            "params": {"p": 1},
        }
        assert workflow.get_output(record.workflow_id) == {"logical": logical, "params": {"p": 1}}
        assert count(marks, logical) == 1


def test_one_off_fires_once_and_not_again_after_a_restart(services, registry, name, marks, store):
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    registry.register(stamping(marks), name=name, at=at)
    first = services(registry)

    eventually(lambda: finished(store, name, 1), timeout=30, what="the one-off run")
    first.stop()
    second = services(registry)

    # Its job is kept with no next run time: a job in that state never fires. (One that
    # fired would be gone: a date trigger fires once.)
    assert second.schedule(name).next_run_at is None
    assert [r.workflow_id for r in store.list_workflows(name=name)] == [run_id(name, at)]
    assert count(marks, format_logical_date(at)) == 1


def test_trigger_merges_params_over_the_defaults(workflow, services, registry, name, marks, store):
    registry.register(stamping(marks), name=name, params={"region": "eu", "limit": 10})
    service = services(registry)

    workflow_id = service.trigger(name, {"limit": 99}, trigger="api")

    assert workflow.wait_for_completion(workflow_id, timeout=30) == OK
    assert workflow.get_output(workflow_id)["params"] == {"region": "eu", "limit": 99}
    assert store.get_workflow(workflow_id).trigger == "api"
    with pytest.raises(RunExistsError):
        service.trigger(name, workflow_id=workflow_id)

    # Another process (no dags loaded) stores the request; the running service starts it.
    control = services(Registry(), start=False)
    queued = control.trigger(name, {"region": "us"})
    eventually(
        lambda: store.list_workflows(id_prefix=queued) and workflow.get_status(queued) == OK,
        timeout=30,
        what="the queued trigger",
    )
    assert workflow.get_output(queued)["params"] == {"region": "us", "limit": 10}
    with pytest.raises(ScheduleNotFoundError, match="No schedule 'nope'"):
        control.trigger("nope")


def test_pause_survives_a_restart_and_unpause_resumes(services, registry, name, marks, store):
    registry.register(stamping(marks), name=name, interval=1)
    service = services(registry)
    eventually(lambda: finished(store, name, 1), timeout=30, what="a first tick")

    service.pause(name)
    service.stop()
    runs_when_paused = len(store.list_workflows(name=name))
    restarted = services(registry)  # registered paused=False: the stored pause wins

    # Its job has no next run time, so it cannot fire; and once a housekeeping pass (which
    # starts backlogged ticks) has run and the service has stopped, which waits for the
    # runs it was starting, no run was added while it was paused.
    info = restarted.schedule(name)
    assert info.paused
    assert info.next_run_at is None
    housekeeping = passes(restarted, "housekeeping")
    eventually(housekeeping, timeout=30, what="a housekeeping pass while paused")
    restarted.stop()
    assert len(store.list_workflows(name=name)) == runs_when_paused

    again = services(registry)
    assert again.schedule(name).paused
    again.unpause(name)
    assert again.schedule(name).next_run_at is not None
    eventually(
        lambda: len(store.list_workflows(name=name)) > runs_when_paused,
        timeout=30,
        what="a tick after unpause",
    )
    with pytest.raises(ScheduleNotFoundError):
        again.pause("nope")


def test_registered_paused_starts_paused(services, registry, name, marks):
    registry.register(stamping(marks), name=name, interval=1, paused=True)
    service = services(registry, start=False)
    service.sync()
    assert service.schedule(name).paused


def test_a_duplicate_tick_is_a_no_op(workflow, services, registry, name, marks, store):
    registry.register(stamping(marks), name=name, max_active_runs=2)
    service = services(registry)
    schedule = registry.get(name)
    tick = datetime(2026, 1, 1, 3, tzinfo=UTC)

    assert service.launcher.launch(schedule, tick) == run_id(name, tick)
    assert service.launcher.launch(schedule, tick) is None
    # Replicas firing the same tick at the same moment.
    racing_tick = tick + timedelta(days=1)
    results: list = []
    threads = [
        threading.Thread(
            target=lambda: results.append(service.launcher.launch(schedule, racing_tick))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results.count(run_id(name, racing_tick)) == 1
    assert results.count(None) == 3
    for moment in (tick, racing_tick):
        assert workflow.wait_for_completion(run_id(name, moment), timeout=30) == OK
        assert count(marks, format_logical_date(moment)) == 1
    assert len(store.list_workflows(name=name)) == 2


@ray.remote
def held(logical: str, marks: str, go: str) -> str:
    mark(marks, logical)
    eventually(lambda: os.path.exists(go), timeout=60, what="go")
    return logical


def test_a_replica_that_has_not_seen_the_other_s_run_queues_its_tick(
    workflow, services, name, marks, store, tmp_path
):
    # Given two replicas of one schedule allowed one active run, the first running a tick
    go = tmp_path / "go"

    def factory(run):
        return held.bind(format_logical_date(run.logical_date), str(marks), str(go))

    registries = [Registry(), Registry()]
    for registry in registries:
        registry.register(factory, name=name, interval=3600, catchup=True, max_active_runs=1)
    first, second = services(registries[0]), services(registries[1])
    one, two = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 1, tzinfo=UTC)
    assert first.launcher.launch(registries[0].get(name), one) == run_id(name, one)

    # When the second, whose count of active runs predates that run, starts the next tick
    second.backlog._launch(registries[1].get(name), [two])

    # Then the database refuses it and the tick waits in the schedule's backlog
    assert [r.workflow_id for r in store.list_workflows(name=name)] == [run_id(name, one)]
    job = second.scheduler.get_job(jobs.job_id(jobs.SCHEDULE, name), "default")
    assert job.kwargs["backlog"] == [format_logical_date(two)]
    # ... until the slot frees up, and then it runs, once, after the first
    go.touch()
    eventually(lambda: finished(store, name, 2), timeout=60, what="both ticks")
    runs = sorted(store.list_workflows(name=name), key=lambda r: r.created_at)
    assert [r.workflow_id for r in runs] == [run_id(name, one), run_id(name, two)]
    assert runs[1].created_at >= runs[0].ended_at
    assert count(marks, format_logical_date(two)) == 1


def test_a_factory_error_is_a_failed_run(workflow, services, registry, name, store):
    def broken(run):
        raise KeyError("orders table missing")

    registry.register(broken, name=name)
    service = services(registry)
    tick = datetime(2026, 2, 1, tzinfo=UTC)

    workflow_id = service.launcher.launch(registry.get(name), tick)

    assert workflow.wait_for_completion(workflow_id, timeout=30) == WorkflowStatus.FAILED
    assert "orders table missing" in store.get_workflow(workflow_id).error
    with pytest.raises(KeyError):  # a manual trigger tells its caller instead
        service.trigger(name)


def test_a_changed_trigger_is_replaced_and_an_unchanged_one_kept(services, name, marks):
    old = Registry()
    old.register(stamping(marks), name=name, interval=3600)
    service = services(old, start=False)
    service.sync()
    identifier = jobs.job_id(jobs.SCHEDULE, name)
    kept = datetime(2030, 1, 1, tzinfo=UTC)
    service.scheduler.modify_job(identifier, "default", next_run_time=kept)

    service.sync()
    assert service.schedule(name).next_run_at == kept

    new = Registry()
    new.register(stamping(marks), name=name, cron="0 3 * * *", timezone="America/New_York")
    changed = services(new, start=False)
    changed.sync()
    info = changed.schedule(name)
    assert info.trigger == "cron 0 3 * * * (America/New_York)"
    assert info.next_run_at.astimezone(UTC).hour in (7, 8)  # 03:00 New York, EDT or EST
    assert info.next_run_at - datetime.now(UTC) < timedelta(days=1)
