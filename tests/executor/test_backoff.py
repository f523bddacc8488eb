"""Retry policies with backoff on real Ray: attempts spaced as the policy says, the wait
holding no CPU, and a wait that survives its manager's death with only what is left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from executor import workflow as api
from executor.actors import find_manager
from executor.status import TaskStatus
from tests.waiting import eventually

TASK = f"{__name__}.flaky"


@ray.remote
def flaky(marks: str, failures: int) -> int:
    """Fails its first ``failures`` attempts; each attempt leaves its start time."""
    Path(marks, f"attempt-{time.time()}").write_text("")
    attempt = len(attempts(Path(marks)))
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} failed")
    return attempt


def attempts(marks: Path) -> list[float]:
    return sorted(float(p.name[8:]) for p in marks.iterdir() if p.name.startswith("attempt-"))


def retrying(store, workflow_id: str, attempt: int):
    task = store.get_task(workflow_id, TASK)
    return task if task.status == TaskStatus.RETRYING and task.next_attempt == attempt else None


def test_attempts_are_spaced_by_the_policy_holding_no_cpu(workflow, store, marks, workflow_id):
    # Given a task that fails twice, retried after 1 s, then 2 s
    policy = api.Retry(max_attempts=3, initial_s=1.0, backoff=2.0, jitter=0.0)
    task = flaky.options(**api.options(retry=policy)).bind(str(marks), 2)
    ref = workflow.run_async(task, workflow_id=workflow_id)

    # While it waits for its third attempt, its row says so and no CPU is held
    waiting = eventually(lambda: retrying(store, workflow_id, 3), what="the second backoff")
    assert (waiting.max_attempts, waiting.attempts) == (3, 2)
    assert "attempt 2 failed" in waiting.error
    total = ray.cluster_resources()["CPU"]
    eventually(lambda: ray.available_resources().get("CPU") == total, what="every CPU free")

    # Then it succeeds on the third attempt, started 1 s and 2 s (within 20%) after those
    # before it
    assert ray.get(ref, timeout=60) == 3
    first, second, third = attempts(marks)
    assert 0.8 <= second - first <= 1.2
    assert 1.6 <= third - second <= 2.4
    done = store.get_task(workflow_id, TASK)
    assert (done.status, done.attempts) == (TaskStatus.SUCCESSFUL, 3)


def test_a_task_fails_when_its_attempts_run_out(workflow, marks, workflow_id):
    policy = api.Retry(max_attempts=2, initial_s=0.2, on=(ConnectionError,))
    task = flaky.options(**api.options(retry=policy)).bind(str(marks), 5)
    with pytest.raises(api.WorkflowExecutionError, match="attempt 2 failed"):
        workflow.run(task, workflow_id=workflow_id)
    assert len(attempts(marks)) == 2


def test_errors_the_policy_does_not_cover_fail_at_once(workflow, marks, workflow_id):
    policy = api.Retry(max_attempts=5, initial_s=0.2, on=(ValueError,))
    task = flaky.options(**api.options(retry=policy)).bind(str(marks), 5)
    with pytest.raises(api.WorkflowExecutionError, match="attempt 1 failed"):
        workflow.run(task, workflow_id=workflow_id)
    assert len(attempts(marks)) == 1


def test_a_wait_outlives_its_managers_death_with_only_what_is_left(
    workflow, store, marks, workflow_id
):
    # Given a task waiting 8 s before its second attempt
    policy = api.Retry(max_attempts=2, initial_s=8.0, jitter=0.0)
    ref = workflow.run_async(
        flaky.options(**api.options(retry=policy)).bind(str(marks), 1), workflow_id=workflow_id
    )
    waiting = eventually(lambda: retrying(store, workflow_id, 2), what="the backoff")

    # When its manager dies 5 s into the wait (Ray restarts it, and the run's call with it)
    time.sleep(max(0.0, attempts(marks)[0] + 5 - time.time()))
    killed_at = time.time()
    ray.kill(find_manager(workflow._config), no_restart=False)
    # This process would go on creating workflows for the dead manager's owner id (which
    # read RESUMABLE until the new one takes them): ask for the new one.
    api._owners.clear()

    # Then the second attempt starts when the wait recorded first ends (3 s after the
    # kill), not a whole wait after it: the bound lies halfway, clear of a loaded restart
    assert ray.get(ref, timeout=60) == 2
    second = attempts(marks)[1]
    assert waiting.wake_at - 0.1 <= second < killed_at + 8.0 - 2.5


def test_a_cancel_stops_a_task_waiting_to_retry(workflow, store, marks, workflow_id):
    policy = api.Retry(max_attempts=3, initial_s=30.0)
    ref = workflow.run_async(
        flaky.options(**api.options(retry=policy)).bind(str(marks), 5), workflow_id=workflow_id
    )
    eventually(lambda: retrying(store, workflow_id, 2), what="the backoff")
    workflow.cancel(workflow_id)
    with pytest.raises(api.WorkflowCancellationError):
        ray.get(ref, timeout=30)
    assert store.get_task(workflow_id, TASK).status == TaskStatus.CANCELED
    assert len(attempts(marks)) == 1
