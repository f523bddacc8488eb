"""Start marks: a worker's batch of RUNNING marks lands whole, one transaction per workflow."""

from __future__ import annotations

from executor.notices import StartNotices
from executor.options import TaskOptions
from executor.stages import TaskContext
from executor.status import TaskStatus
from executor.store import NewTask


def test_a_flushed_batch_marks_every_task_running(workflow, store, workflow_id):
    ids = ["a", "b", "c"]
    store.create_workflow(
        workflow_id, "marks", None, None, "c", [NewTask(t, f"m.{t}", [], {}) for t in ids], {}
    )
    contexts = {t: TaskContext(workflow._config, workflow_id, t, TaskOptions()) for t in ids}
    notices = StartNotices(delay=3600)
    notices.started(contexts["a"], 10.0)
    notices.started(contexts["b"], 11.0)

    notices.flush()

    tasks = {t.task_id: t for t in store.load_tasks(workflow_id)}
    assert [(tasks[t].status, tasks[t].started_at, tasks[t].attempts) for t in ids] == [
        (TaskStatus.RUNNING, 10.0, 1),
        (TaskStatus.RUNNING, 11.0, 1),
        (TaskStatus.PENDING, None, 0),
    ]
    # Written: the tasks' finishes need not record the starts again.
    assert notices.finished(contexts["a"]) is True
    store.delete_workflow(workflow_id)


def test_a_start_not_yet_flushed_is_left_to_the_finish(workflow, workflow_id):
    ctx = TaskContext(workflow._config, workflow_id, "a", TaskOptions())
    notices = StartNotices(delay=3600)  # its thread does not flush during the test
    notices.started(ctx, 10.0)
    assert notices.finished(ctx) is False
