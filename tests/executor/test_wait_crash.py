"""SIGKILL a process while its workflow sleeps or waits for an event, resume elsewhere.

The killed process runs its own local Ray, so its manager dies with it; this pytest
process, which never imported the script, resumes the workflow.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.executor import scripts
from tests.waiting import count, eventually

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    database_url, storage, marks, workflow_id, mode = sys.argv[1:6]
    if mode == "suspend":
        os.environ["GNOMON_SUSPEND_AFTER"] = "1"   # inherited by this script's Ray
    import ray
    from executor import workflow
    from tests.waiting import mark

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    workflow.init(database_url, storage=storage)

    @ray.remote
    def step(name, *upstream):
        mark(marks, name)
        return name, upstream

    before = step.bind("before")
    if mode == "wait":
        gate = workflow.wait_for_event(workflow.HTTPListener, event_key="go")
    else:
        gate = workflow.sleep(float(os.environ.get("SLEEP", "8")))
    workflow.run(step.bind("after", before, gate), workflow_id=workflow_id)
    """
)


def _start(
    tmp_path: Path, database_url: str, blob_root: Path, marks: Path, workflow_id: str, mode: str
) -> subprocess.Popen:
    args = [database_url, str(blob_root), str(marks), workflow_id, mode]
    return scripts.start(SCRIPT, tmp_path, args)


def _gate_task(store, workflow_id: str, task_id: str):
    try:
        task = store.get_task(workflow_id, task_id)
    except Exception:
        return None
    return task if task.status.value == "WAITING" else None


def test_sigkill_during_sleep_resumes_for_what_is_left(
    workflow, store, database_url, blob_root, marks, workflow_id, tmp_path
):
    # Given a workflow killed about 3 s into an 8 s sleep
    process = _start(tmp_path, database_url, blob_root, marks, workflow_id, "sleep")
    try:
        task = eventually(
            lambda: _gate_task(store, workflow_id, "workflow.sleep"),
            timeout=60,
            what="the sleep to start",
        )
        eventually(lambda: count(marks, "before") == 1, what="the first task")
        slept_from = task.started_at
        time.sleep(max(0.0, slept_from + 3 - time.time()))
    finally:
        scripts.kill_group(process)
    assert eventually(
        lambda: workflow.get_status(workflow_id) == workflow.WorkflowStatus.RESUMABLE,
        timeout=10,
        what="RESUMABLE",
    )

    # When a fresh process resumes it
    name, upstream = workflow.resume(workflow_id)

    # Then it wakes about 8 s after the sleep began (not 8 s after the resume)
    woke = store.get_task(workflow_id, "workflow.sleep").ended_at
    assert 7.9 <= woke - slept_from < 10.5
    assert name == "after"
    assert upstream[1] is None
    assert count(marks, "before") == 1  # checkpointed before the kill: never again
    assert count(marks, "after") == 1


def test_sigkill_during_event_wait_keeps_the_event(
    workflow, store, database_url, blob_root, marks, workflow_id, tmp_path
):
    process = _start(tmp_path, database_url, blob_root, marks, workflow_id, "wait")
    try:
        eventually(
            lambda: _gate_task(store, workflow_id, "workflow.wait_for_event"),
            timeout=60,
            what="the wait to start",
        )
        eventually(lambda: count(marks, "before") == 1, what="the first task")
    finally:
        scripts.kill_group(process)
    eventually(
        lambda: workflow.get_status(workflow_id) == workflow.WorkflowStatus.RESUMABLE,
        timeout=10,
        what="RESUMABLE",
    )

    # An event sent while nothing runs the workflow is stored, not lost
    workflow.send_event(workflow_id, "go", {"approved": True})
    name, upstream = workflow.resume(workflow_id)

    assert (name, upstream[1]) == ("after", ("go", {"approved": True}))
    assert count(marks, "before") == 1
    assert [e.consumed_by for e in store.list_events(workflow_id)] == ["workflow.wait_for_event"]


def test_long_sleep_suspends_in_the_database(
    workflow, store, database_url, blob_root, marks, workflow_id, tmp_path
):
    # Given a sleep longer than the suspend threshold, in a process that then dies
    process = _start(tmp_path, database_url, blob_root, marks, workflow_id, "suspend")
    try:
        eventually(lambda: _exists(store, workflow_id), timeout=60, what="submission")
        record = eventually(
            lambda: (r := store.get_workflow(workflow_id)).wake_at and r,
            timeout=60,
            what="suspension",
        )
    finally:
        scripts.kill_group(process)

    # Then the workflow is parked: PENDING, no owner, a wake time, and due for the scheduler
    assert record.status == workflow.WorkflowStatus.PENDING
    assert record.owner is None
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.PENDING
    assert workflow_id in [w for w, _ in store.due_wakeups(record.wake_at)]
    assert workflow_id not in [w for w, _ in workflow.list_all("RESUMABLE")]

    # When it is woken, it sleeps only what is left
    workflow.resume(workflow_id)
    assert store.get_task(workflow_id, "workflow.sleep").ended_at >= record.wake_at
    assert time.time() < record.wake_at + 5
    assert count(marks, "before") == 1
    assert count(marks, "after") == 1


def _exists(store, workflow_id: str) -> bool:
    try:
        store.get_workflow(workflow_id)
        return True
    except Exception:
        return False


pytestmark = pytest.mark.slow
