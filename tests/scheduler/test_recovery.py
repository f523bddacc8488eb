"""Recovery and wake-ups: the service resumes workflows whose owner died, catches up missed
ticks after downtime as ``catchup`` says, and wakes workflows at a set time."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import ray

from executor.manager import manager_for
from executor.status import WorkflowStatus
from scheduler import jobs
from scheduler.registry import Registry, format_logical_date, run_id
from tests.waiting import count, eventually, mark

UTC = timezone.utc
OK = WorkflowStatus.SUCCESSFUL


@ray.remote
def first_step(marks: str) -> str:
    mark(marks, "first")
    return "first"


@ray.remote
def blocked_step(previous: str, marks: str, go: str) -> str:
    mark(marks, "blocked")
    eventually(lambda: os.path.exists(go), timeout=60, what="go")
    return previous + "+blocked"


@ray.remote
def last_step(previous: str, marks: str) -> str:
    mark(marks, "last")
    return previous + "+last"


def orphan_workflow(workflow, workflow_id, database_url, blob_root, tmp_path, marks):
    """A workflow blocked in its second task whose owner (a manager of its own) is killed;
    returns the file that unblocks it once it reads RESUMABLE."""
    go = tmp_path / "go"
    workflow.init(database_url, storage=str(tmp_path / "victim-blobs"))
    try:
        dag = last_step.bind(
            blocked_step.bind(first_step.bind(str(marks)), str(marks), str(go)), str(marks)
        )
        workflow.submit(dag, workflow_id=workflow_id)
        eventually(lambda: count(marks, "blocked") >= 1, timeout=60, what="the blocked task")
        ray.kill(manager_for(workflow._config))
    finally:
        workflow.init(database_url, storage=str(blob_root))
    eventually(
        lambda: workflow.get_status(workflow_id) == WorkflowStatus.RESUMABLE,
        timeout=30,
        what="the orphan to read RESUMABLE",
    )
    return go


def test_start_resumes_a_workflow_whose_owner_died(
    workflow, workflow_id, services, registry, database_url, blob_root, tmp_path, marks, store
):
    go = orphan_workflow(workflow, workflow_id, database_url, blob_root, tmp_path, marks)
    go.touch()

    service = services(registry)

    eventually(lambda: workflow.get_status(workflow_id) == OK, timeout=60, what="the resume")
    assert workflow.get_output(workflow_id) == "first+blocked+last"
    assert count(marks, "first") == 1  # checkpointed before the owner died
    assert count(marks, "last") == 1
    assert service.recover() == []  # nothing left to resume


@ray.remote
def flaky(marks: str) -> str:
    if mark(marks, "flaky") == 1:
        raise ValueError("first attempt fails")
    return "woke"


def failed_once(workflow, workflow_id, marks):
    """A FAILED workflow that succeeds when it is resumed."""
    with pytest.raises(workflow.WorkflowExecutionError):
        workflow.run(flaky.bind(str(marks)), workflow_id=workflow_id)
    assert workflow.get_status(workflow_id) == WorkflowStatus.FAILED


def test_a_wakeup_job_resumes_the_workflow_at_its_time(
    workflow, workflow_id, services, registry, marks
):
    failed_once(workflow, workflow_id, marks)
    service = services(registry)

    service.schedule_wakeup(workflow_id, datetime.now(UTC) + timedelta(seconds=0.5))

    assert workflow.get_status(workflow_id) == WorkflowStatus.FAILED
    eventually(lambda: workflow.get_status(workflow_id) == OK, timeout=30, what="the wake-up")
    assert workflow.get_output(workflow_id) == "woke"


def test_recovery_gives_suspended_workflows_a_wakeup(
    workflow, workflow_id, services, registry, marks, monkeypatch
):
    failed_once(workflow, workflow_id, marks)
    service = services(registry)
    wake_at = time.time() + 0.5
    # The store's contract: suspended workflows due before ``before``, soonest first.
    monkeypatch.setattr(
        service.store,
        "due_wakeups",
        lambda before: [(workflow_id, wake_at)] if before >= wake_at else [],
    )

    service.recover()

    job = service.scheduler.get_job(jobs.job_id(jobs.WAKEUP, workflow_id), "default")
    assert job is not None
    assert abs(job.next_run_time.timestamp() - wake_at) < 0.01
    eventually(lambda: workflow.get_status(workflow_id) == OK, timeout=30, what="the wake-up")


@ray.remote
def tick_task(logical: str, marks: str, seconds: float) -> str:
    mark(marks, logical)
    time.sleep(seconds)
    return logical


def restart_after_downtime(services, registry, name, marks, seconds, **options):
    """Register, then start as if the scheduler had been down for four minutes (the job's
    next run was due then); returns the started service and the latest tick missed."""
    registry.register(
        lambda run: tick_task.bind(format_logical_date(run.logical_date), str(marks), seconds),
        name=name,
        interval=60,
        **options,
    )
    before = services(registry, start=False)
    before.sync()
    last_tick = datetime.now(UTC).replace(second=0, microsecond=0)
    before.scheduler.modify_job(
        jobs.job_id(jobs.SCHEDULE, name), "default", next_run_time=last_tick - timedelta(minutes=4)
    )
    before.stop()
    return services(registry), last_tick


def test_catchup_off_runs_only_the_latest_missed_tick(
    workflow, services, registry, name, marks, store
):
    service, last_tick = restart_after_downtime(services, registry, name, marks, 0.0, catchup=False)

    eventually(lambda: store.list_workflows(name=name), timeout=30, what="a run")
    # Once the service has stopped, which waits for the runs it was starting, every
    # missed tick it fired has its run, and any it held back is in the stored backlog.
    service.stop()
    runs = sorted(record.workflow_id for record in store.list_workflows(name=name))
    # The latest missed tick, not the older ones; the next regular tick may follow it if
    # the test runs across a minute's turn (seen once: 07:04 and 07:05 both ran).
    assert runs[0].split("@", 1)[1] >= format_logical_date(last_tick), runs
    assert len(runs) == 1 or (
        len(runs) == 2 and runs[1] == run_id(name, last_tick + timedelta(minutes=1))
    )
    stored = services(Registry(), start=False).schedule(name)
    assert stored.backlog == 0
    assert stored.next_run_at > last_tick
    assert workflow.wait_for_completion(runs[0], timeout=30) == OK


def test_catchup_on_runs_every_missed_tick_oldest_first_within_max_active_runs(
    workflow, services, registry, name, marks, store
):
    _, last_tick = restart_after_downtime(
        services, registry, name, marks, 0.5, catchup=True, max_active_runs=2
    )
    expected = [run_id(name, last_tick - timedelta(minutes=m)) for m in (4, 3, 2, 1, 0)]

    eventually(
        lambda: (
            {r.workflow_id for r in store.list_workflows(name=name) if r.status == OK}
            >= set(expected)
        ),
        timeout=60,
        what="five ticks",
    )
    records = sorted(
        (r for r in store.list_workflows(name=name) if r.workflow_id in expected),
        key=lambda r: r.created_at,
    )
    assert [r.workflow_id for r in records] == expected  # oldest first
    for moment in expected:
        assert count(marks, moment.split("@", 1)[1]) == 1
    # Never more than two runs between creation and end at once.
    edges = sorted(
        [(r.created_at, 1) for r in records] + [(r.ended_at, -1) for r in records],
        key=lambda edge: (edge[0], edge[1]),
    )
    active = peak = 0
    for _, step in edges:
        active += step
        peak = max(peak, active)
    assert peak <= 2
