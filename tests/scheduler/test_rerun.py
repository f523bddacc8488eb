"""Retry with current code and fork, for registered workflows: the dags file is fixed on
disk, the folder reloads, and only what had not finished runs again."""

from __future__ import annotations

import pytest
import ray

from executor import workflow as api
from executor.status import TaskStatus
from tests.scheduler.registered import FIX, counts, failed_run, write_dags


def test_retry_with_current_code_runs_the_fixed_task_and_what_follows(
    services, workflow, store, dags, marks, name
):
    registry, folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    first_version = store.get_workflow(workflow_id).code_version
    assert first_version == registry.get(name).code_version

    write_dags(dags, marks, name, FIX)
    folder.refresh()
    assert ray.get(workflow.retry(workflow_id, rebuild=registry.rebuild)) == 21

    assert counts(marks) == [1, 1, 2, 1]
    record = store.get_workflow(workflow_id)
    assert record.status == api.SUCCESSFUL
    assert record.code_version == registry.get(name).code_version != first_version
    # A task records its code version where it differs from the run's: the kept ones.
    tasks = {task.task_id.rsplit(".", 1)[-1]: task for task in store.load_tasks(workflow_id)}
    assert tasks["step"].code_version == first_version
    assert tasks["third"].code_version is None
    [earlier] = store.task_attempts(workflow_id, tasks["third"].task_id)
    assert earlier.status == TaskStatus.FAILED
    assert earlier.code_version == first_version
    assert "the bug" in earlier.error


def test_fork_with_new_params_leaves_the_origin_untouched(
    services, workflow, store, dags, marks, name
):
    registry, folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    write_dags(dags, marks, name, FIX)
    folder.refresh()
    ray.get(workflow.retry(workflow_id, rebuild=registry.rebuild))
    before = [(t.task_id, t.status, t.attempts) for t in store.load_tasks(workflow_id)]

    forked = workflow.fork(workflow_id, params={"start": 100}, rebuild=registry.rebuild)

    assert forked == f"{workflow_id}~fork1"
    assert ray.get(workflow.get_output_async(forked)) == 1021
    assert workflow.get_output(workflow_id) == 21
    assert [(t.task_id, t.status, t.attempts) for t in store.load_tasks(workflow_id)] == before
    assert store.get_workflow(forked).forked_from == workflow_id
    assert store.get_workflow(forked).user_metadata["params"] == {"start": 100}
    assert store.forks(workflow_id) == [forked]
    assert counts(marks) == [2, 2, 3, 2]  # the new start reaches every task


def test_a_retry_after_the_dags_file_stopped_registering_the_name_is_refused(
    services, workflow, store, dags, marks, name
):
    registry, folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    (dags / "four.py").write_text("X = 1\n")
    folder.refresh()

    with pytest.raises(api.WorkflowNotRetryableError, match=f"{name!r} is not loaded any more"):
        workflow.retry(workflow_id, rebuild=registry.rebuild)

    assert workflow.get_status(workflow_id) == api.FAILED
    assert counts(marks) == [1, 1, 1, 0]
