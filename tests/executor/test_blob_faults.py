"""Fault: the blob store is unwritable. The task fails clearly; once fixed, resume works."""

from __future__ import annotations

import ray

from tests.waiting import count, mark


@ray.remote
def small(marks: str) -> int:
    mark(marks, "small")
    return 1


@ray.remote
def large(n: int) -> bytes:
    return b"x" * (2 << 20) + bytes([n])


@ray.remote
def size(blob: bytes) -> int:
    return len(blob)


def test_unwritable_blob_store_fails_clearly_then_resumes(
    ray_address, database_url, tmp_path, marks, workflow_id
):
    from executor import workflow

    # Given a blob store whose directory cannot be created (a file stands in its way;
    # the suite runs as root, so permissions would not stop it)
    blocker = tmp_path / "blocked"
    blocker.write_text("not a directory")
    workflow.init(database_url, storage=str(blocker / "blobs"))

    # When a task's output is large enough to need the blob store
    dag = size.bind(large.bind(small.bind(str(marks))))
    try:
        workflow.run(dag, workflow_id=workflow_id)
        raise AssertionError("the workflow should fail")
    except workflow.WorkflowExecutionError as error:
        message = str(error)

    # Then the task fails with a message naming the blob store, and nothing is lost
    assert "is not writable" in message
    assert str(blocker) in message
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED
    failed = [t for t in workflow_tasks(workflow_id) if t.status.value == "FAILED"]
    assert [t.task_id for t in failed] == [f"{__name__}.large"]
    assert "is not writable" in failed[0].error

    # When the store is fixed, the workflow resumes; the finished task does not run again
    blocker.unlink()
    blocker.mkdir()
    assert workflow.resume(workflow_id) == (2 << 20) + 1
    assert count(marks, "small") == 1


def workflow_tasks(workflow_id: str):
    from executor import workflow
    from executor.config import handles

    return handles(workflow._config)[0].load_tasks(workflow_id)
