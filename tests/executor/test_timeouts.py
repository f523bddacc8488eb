"""Timeouts on real Ray: a task stopped past its ``timeout_s`` (interrupted, or its worker
killed when it will not stop), retried by its policy; a run stopped past its own."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import ray

from executor import workflow as api
from executor.errors import InvalidInputError, TaskTimeoutError, WorkflowTimeoutError
from executor.status import TaskStatus, WorkflowStatus
from tests.waiting import eventually


@ray.remote
def slow_unless_fixed(marks: str) -> str:
    """Hangs (as on a dead connection) until the test leaves ``marks/fixed``."""
    Path(marks, f"start-{time.time()}").write_text("")
    if not Path(marks, "fixed").exists():
        time.sleep(60)
    return "done"


def starts(marks: Path) -> list[float]:
    return sorted(float(p.name[6:]) for p in marks.iterdir() if p.name.startswith("start-"))


def test_a_task_past_its_timeout_fails_then_resumes_once_fixed(workflow, store, marks, workflow_id):
    # Given a task that hangs, with a timeout of 2 s
    task = slow_unless_fixed.options(**api.options(timeout_s=2)).bind(str(marks))

    # When it runs, it fails with TaskTimeoutError about 2 s after it started
    with pytest.raises(api.WorkflowExecutionError, match="ran past its timeout of 2 s") as caught:
        workflow.run(task, workflow_id=workflow_id)
    assert isinstance(caught.value.__cause__, TaskTimeoutError)
    row = store.get_task(workflow_id, f"{__name__}.slow_unless_fixed")
    assert row.status == TaskStatus.FAILED
    assert "TaskTimeoutError" in row.error
    assert 1.8 <= row.ended_at - starts(marks)[0] <= 3.5

    # And once the cause is fixed, the run resumes and succeeds
    Path(marks, "fixed").write_text("")
    assert workflow.resume(workflow_id) == "done"


@ray.remote(max_retries=0)
def will_not_stop(marks: str) -> None:
    Path(marks, f"start-{time.time()}").write_text("")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            time.sleep(60)
        except Exception:  # swallows the timeout, as careless code does
            continue


def test_code_that_will_not_stop_has_its_worker_killed(workflow, store, marks, workflow_id):
    task = will_not_stop.options(**api.options(timeout_s=1)).bind(str(marks))
    began = time.time()
    with pytest.raises(api.WorkflowExecutionError, match="worker was killed") as caught:
        workflow.run(task, workflow_id=workflow_id)
    assert isinstance(caught.value.__cause__, TaskTimeoutError)
    assert time.time() - began < 20
    assert len(starts(marks)) == 1
    row = store.get_task(workflow_id, f"{__name__}.will_not_stop")
    assert row.status == TaskStatus.FAILED
    assert row.error.startswith("TaskTimeoutError")


@ray.remote
def slow_first_time(marks: str) -> int:
    Path(marks, f"start-{time.time()}").write_text("")
    if len(starts(Path(marks))) == 1:
        time.sleep(60)
    return len(starts(Path(marks)))


def test_a_timeout_is_retried_by_the_tasks_policy(workflow, store, marks, workflow_id):
    before = store.counters()
    policy = api.Retry(max_attempts=2, initial_s=0, on=(IOError,))
    task = slow_first_time.options(**api.options(timeout_s=1, retry=policy)).bind(str(marks))
    assert workflow.run(task, workflow_id=workflow_id) == 2
    after = store.counters()
    assert after.get("task_timeouts", 0) - before.get("task_timeouts", 0) == 1
    assert after.get("task_retries", 0) - before.get("task_retries", 0) == 1


@ray.remote
def hold(marks: str, name: str, seconds: float) -> str:
    Path(marks, f"{name}-{time.time()}").write_text("")
    time.sleep(seconds)
    return name


@ray.remote
def hold_until_fixed(marks: str) -> str:
    """Holds its pool slot until the test leaves ``marks/fixed``."""
    Path(marks, f"start-{time.time()}").write_text("")
    eventually(lambda: Path(marks, "fixed").exists(), timeout=60, what="marks/fixed")
    return "done"


def test_waiting_for_a_pool_slot_does_not_count(workflow, store, marks, workflow_id):
    # Given a pool of one held until the test lets go, and a task with a 1 s timeout
    # queued behind it for 1.5 s
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    store.set_pool(pool, 1, None)
    first = workflow.run_async(
        hold_until_fixed.options(**api.options(pool=pool)).bind(str(marks)),
        workflow_id=f"{workflow_id}-first",
    )
    eventually(lambda: starts(marks), what="the first task holding the slot")
    quick = hold.options(**api.options(pool=pool, timeout_s=1)).bind(str(marks), "quick", 0.1)
    queued = workflow.run_async(quick, workflow_id=workflow_id)
    task_id = f"{__name__}.hold"
    eventually(
        lambda: (
            workflow.get_status(workflow_id) == WorkflowStatus.RUNNING
            and store.get_task(workflow_id, task_id).status == TaskStatus.QUEUED
        ),
        what="the quick task queued for the slot",
    )
    time.sleep(1.5)
    Path(marks, "fixed").write_text("")

    # Then it succeeds: only its own run counts
    assert ray.get(queued, timeout=60) == "quick"
    assert ray.get(first, timeout=60) == "done"
    assert store.get_task(workflow_id, task_id).queued_s > 1


def test_a_run_past_its_timeout_is_stopped_and_failed(workflow, store, marks, workflow_id):
    task = slow_unless_fixed.bind(str(marks))
    began = time.time()
    with pytest.raises(WorkflowTimeoutError, match=r"ran past its timeout of 1\.5 s"):
        workflow.run(task, workflow_id=workflow_id, timeout_s=1.5)
    assert time.time() - began < 15
    record = store.get_workflow(workflow_id)
    assert record.status == WorkflowStatus.FAILED
    assert "ran past its timeout" in record.error
    assert record.timeout_s == 1.5
    # Its task was stopped (marked CANCELED), not left to run on
    eventually(
        lambda: (
            store.get_task(workflow_id, f"{__name__}.slow_unless_fixed").status
            == TaskStatus.CANCELED
        ),
        what="the task to be stopped",
    )


def test_bad_timeouts_are_refused_where_they_are_given(workflow, workflow_id):
    with pytest.raises(InvalidInputError, match="timeout_s must be a positive number"):
        api.options(timeout_s=-1)
    with pytest.raises(InvalidInputError, match="timeout_s must be a positive number"):
        workflow.run(hold.bind("/tmp", "x", 0), workflow_id=workflow_id, timeout_s=0)
    with pytest.raises(api.WorkflowNotFoundError):
        workflow.get_status(workflow_id)  # nothing was created
