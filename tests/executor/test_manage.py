"""Listing, reading, cancelling, deleting and resuming workflows by id."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
import ray

from executor.status import WorkflowStatus
from executor.store import NewTask
from tests.waiting import count, eventually, mark, process_gone


@ray.remote
def ok() -> str:
    return "ok"


@ray.remote
def broken() -> str:
    raise ValueError("broken on purpose")


@ray.remote
def nap(seconds: float, marks: str) -> str:
    with open(os.path.join(marks, "nap-pid"), "w") as handle:
        handle.write(str(os.getpid()))
    mark(marks, "nap-started")
    time.sleep(seconds)
    mark(marks, "nap-finished")
    return "rested"


@ray.remote
def after_nap(value: str, marks: str) -> str:
    mark(marks, "after-nap")
    return value + "!"


# ------------------------------------------------------------------- list_all


@pytest.fixture
def finished_pair(workflow, workflow_id):
    """One SUCCESSFUL and one FAILED workflow."""
    good, bad = f"{workflow_id}-good", f"{workflow_id}-bad"
    workflow.run(ok.bind(), workflow_id=good)
    with pytest.raises(workflow.WorkflowExecutionError):
        workflow.run(broken.bind(), workflow_id=bad)
    return good, bad


def test_list_all_filters_by_status(workflow, finished_pair):
    good, bad = finished_pair
    Status = workflow.WorkflowStatus

    everything = dict(workflow.list_all())
    assert everything[good] == Status.SUCCESSFUL
    assert everything[bad] == Status.FAILED

    for status_filter in (Status.SUCCESSFUL, "SUCCESSFUL", "successful", {Status.SUCCESSFUL}):
        listed = dict(workflow.list_all(status_filter))
        assert listed.get(good) == Status.SUCCESSFUL, status_filter
        assert bad not in listed, status_filter
        assert set(listed.values()) == {Status.SUCCESSFUL}, status_filter

    both = dict(workflow.list_all({Status.SUCCESSFUL, "FAILED"}))
    assert both[good] == Status.SUCCESSFUL
    assert both[bad] == Status.FAILED
    assert set(both.values()) <= {Status.SUCCESSFUL, Status.FAILED}

    assert good not in dict(workflow.list_all(Status.RUNNING))


@pytest.mark.parametrize(
    "bad",
    [
        "BOGUS",
        {"SUCCESSFUL", "BOGUS"},
        42,
    ],
)
def test_list_all_rejects_a_bad_status_filter(workflow, bad):
    # An unknown name is a ValueError, anything but a status, a name or a set of them a
    # TypeError, as in Ray Workflows.
    with pytest.raises(TypeError if isinstance(bad, int) else ValueError) as caught:
        workflow.list_all(bad)

    message = str(caught.value)
    assert "\n" not in message
    shown = "'BOGUS'" if not isinstance(bad, int) else "int"
    assert shown in message


def test_list_all_rejects_a_non_string_status(workflow):
    with pytest.raises(TypeError, match=r"status_filter .*int") as caught:
        workflow.list_all(42)
    assert "\n" not in str(caught.value)


# -------------------------------------------------------------- unknown ids


@pytest.mark.parametrize(
    ("call", "raised", "message"),
    [
        (lambda wf, i: wf.get_status(i), "WorkflowNotFoundError", "No workflow '{}'"),
        (lambda wf, i: wf.delete(i), "WorkflowNotFoundError", "No workflow '{}'"),
        # Ray Workflows' ValueErrors, with its messages.
        (lambda wf, i: wf.get_output(i), "ValueError", "No such workflow '{}'"),
        (lambda wf, i: wf.get_output(i, task_id="t"), "ValueError", "No such workflow '{}'"),
        (lambda wf, i: wf.get_metadata(i), "ValueError", "No such workflow_id '{}'"),
        (lambda wf, i: wf.get_metadata(i, "t"), "ValueError", "No such workflow_id '{}'"),
        (lambda wf, i: wf.resume(i), "WorkflowNotResumableError", "Workflow '{}' cannot"),
        (lambda wf, i: wf.resume_async(i), "WorkflowNotResumableError", "Workflow '{}' cannot"),
    ],
    ids=[
        "get_status",
        "delete",
        "get_output",
        "get_output_task",
        "get_metadata",
        "get_metadata_task",
        "resume",
        "resume_async",
    ],
)
def test_an_unknown_id_raises_what_ray_raised(workflow, workflow_id, call, raised, message):
    missing = f"{workflow_id}-missing"
    kind = ValueError if raised == "ValueError" else getattr(workflow, raised)
    with pytest.raises(kind) as caught:
        call(workflow, missing)
    assert str(caught.value).startswith(message.format(missing))
    assert "\n" not in str(caught.value)


def test_cancel_of_an_unknown_id_is_no_error_and_records_nothing(workflow, workflow_id):
    workflow.cancel(f"{workflow_id}-missing")
    with pytest.raises(workflow.WorkflowNotFoundError):
        workflow.get_status(f"{workflow_id}-missing")


def test_unknown_task_of_a_known_workflow(workflow, workflow_id):
    workflow.run(ok.bind(), workflow_id=workflow_id)
    with pytest.raises(ValueError, match="Cannot load output from task id 'nope' in workflow"):
        workflow.get_output(workflow_id, task_id="nope")
    with pytest.raises(ValueError, match=f"No such task_id 'nope' in workflow '{workflow_id}'"):
        workflow.get_metadata(workflow_id, "nope")


# ------------------------------------------------------------ delete, cancel


def test_delete_refuses_an_active_workflow_then_removes_a_finished_one(
    workflow, workflow_id, marks
):
    m = str(marks)
    ref = workflow.run_async(nap.bind(3, m), workflow_id=workflow_id)

    with pytest.raises(workflow.WorkflowStillActiveError, match=workflow_id):
        workflow.delete(workflow_id)

    assert ray.get(ref, timeout=60) == "rested"
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL

    workflow.delete(workflow_id)

    with pytest.raises(workflow.WorkflowNotFoundError):
        workflow.get_status(workflow_id)
    with pytest.raises(ValueError, match="No such workflow"):
        workflow.get_output(workflow_id)
    assert workflow_id not in dict(workflow.list_all())


def test_cancel_a_running_workflow(workflow, workflow_id, marks):
    m = str(marks)
    workflow.run_async(after_nap.bind(nap.bind(3, m), m), workflow_id=workflow_id)
    eventually(lambda: count(marks, "nap-started"), what="the nap to start")

    workflow.cancel(workflow_id)

    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.CANCELED
    with pytest.raises(ValueError, match=f"Workflow {workflow_id} is canceled"):
        workflow.get_output(workflow_id)
    # The running task is stopped (its worker, as Ray Workflows did): it ends without
    # finishing, so the task downstream of it, which needs its output, never starts.
    pid = int((marks / "nap-pid").read_text())
    eventually(lambda: process_gone(pid), what="the canceled nap's worker to be stopped")
    assert count(marks, "nap-finished") == 0
    assert count(marks, "after-nap") == 0
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.CANCELED


# ---------------------------------------------------------------- resuming


@ray.remote
def upstream(marks: str) -> int:
    mark(marks, "upstream")
    return 5


@ray.remote
def unpicklable(x: int, marks: str) -> threading.Lock:
    mark(marks, "unpicklable")
    return threading.Lock()


def test_unpicklable_output_fails_clearly_and_resume_retries_it(
    workflow, workflow_id, marks, store
):
    m = str(marks)
    task_id = f"{__name__}.unpicklable"
    with pytest.raises(workflow.WorkflowExecutionError, match="cannot be pickled"):
        workflow.run(unpicklable.bind(upstream.bind(m), m), workflow_id=workflow_id)

    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED
    assert workflow.get_metadata(workflow_id, task_id)["status"] == "FAILED"
    assert "cannot be pickled" in store.get_task(workflow_id, task_id).error
    assert "cannot be pickled" in store.get_workflow(workflow_id).error

    # A FAILED workflow is resumable: the failing task runs again, the upstream does not.
    with pytest.raises(workflow.WorkflowExecutionError, match="cannot be pickled"):
        workflow.resume(workflow_id)

    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED
    assert count(marks, "upstream") == 1
    assert count(marks, "unpicklable") == 2


@ray.remote
def needs_file(x: int, marks: str) -> int:
    mark(marks, "needs-file")
    if not os.path.exists(os.path.join(marks, "input.txt")):
        raise FileNotFoundError("input.txt is not there yet")
    with open(os.path.join(marks, "input.txt")) as handle:
        return x + int(handle.read())


def test_failed_workflow_resumes_once_the_cause_is_fixed(workflow, workflow_id, marks):
    """Given a workflow that failed on an external condition."""
    m = str(marks)
    with pytest.raises(workflow.WorkflowExecutionError, match="not there yet") as caught:
        workflow.run(needs_file.bind(upstream.bind(m), m), workflow_id=workflow_id)
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED
    with pytest.raises(ValueError, match=r"Cannot load output from workflow .*not there yet"):
        workflow.get_output(workflow_id)

    # When the condition is fixed and it is resumed
    (marks / "input.txt").write_text("37")
    assert workflow.resume(workflow_id) == 42

    # Then it succeeded and its finished upstream task ran exactly once.
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    assert workflow.get_output(workflow_id) == 42
    assert count(marks, "upstream") == 1
    assert count(marks, "needs-file") == 2
    assert workflow.get_metadata(workflow_id)["status"] == workflow.WorkflowStatus.SUCCESSFUL
    task = workflow.get_metadata(workflow_id, f"{__name__}.needs_file")
    assert (task["status"], task["attempts"]) == ("SUCCESSFUL", 2)
    assert workflow.get_metadata(workflow_id, f"{__name__}.upstream")["attempts"] == 1


def test_resuming_a_successful_workflow_returns_its_output(workflow, workflow_id, marks):
    m = str(marks)
    assert workflow.run(upstream.bind(m), workflow_id=workflow_id) == 5
    assert workflow.resume(workflow_id) == 5
    assert count(marks, "upstream") == 1


def test_run_on_a_failed_id_resumes_it(workflow, workflow_id, marks):
    m = str(marks)
    dag = needs_file.bind(upstream.bind(m), m)
    with pytest.raises(workflow.WorkflowExecutionError):
        workflow.run(dag, workflow_id=workflow_id)

    (marks / "input.txt").write_text("1")
    assert workflow.run(dag, workflow_id=workflow_id) == 6
    assert count(marks, "upstream") == 1


def test_resume_of_an_active_workflow_is_refused(workflow, workflow_id, marks):
    ref = workflow.run_async(nap.bind(2, str(marks)), workflow_id=workflow_id)

    # Ray Workflows raised RuntimeError, for running an active id again too.
    with pytest.raises(RuntimeError, match=f"Workflow '{workflow_id}' is already running"):
        workflow.resume(workflow_id)
    with pytest.raises(RuntimeError, match=f"Workflow '{workflow_id}' is already running"):
        workflow.run(nap.bind(2, str(marks)), workflow_id=workflow_id)
    running = workflow.get_metadata(workflow_id)
    assert running["status"] in ("PENDING", "RUNNING")
    assert "end_time" not in running["stats"]
    # Reading the output of a running workflow waits for it.
    assert workflow.get_output(workflow_id) == "rested"
    assert ray.get(ref, timeout=60) == "rested"
    assert count(marks, "nap-started") == 1


def test_cancel_right_after_submission(workflow, workflow_id, marks, tmp_path):
    """A cancel that follows run_async at once stops the workflow and records it.

    Whether the cancel reaches the manager before or after the run has started is a race,
    so it is tried many times; each cancel must leave the workflow CANCELED at once."""
    m = str(marks)
    for attempt in range(40):
        each = f"{workflow_id}-{attempt}"
        workflow.run_async(after_nap.bind(nap.bind(2, m), m), workflow_id=each)
        workflow.cancel(each)
        assert workflow.get_status(each) == workflow.WorkflowStatus.CANCELED, attempt

    # A nap whose cancel went astray is queued ahead of one submitted after all of them,
    # so it finishes its sleep before that one does: run that one through, then look.
    witness = tmp_path / "witness"
    witness.mkdir()
    after_all = after_nap.bind(nap.bind(2, str(witness)), str(witness))
    assert workflow.run(after_all, workflow_id=f"{workflow_id}-witness") == "rested!"
    assert count(marks, "nap-finished") == 0
    assert count(marks, "after-nap") == 0


def _refuse_to_load() -> None:
    raise RuntimeError("this argument cannot be loaded here")


class Unloadable:
    """An argument that pickles but cannot be unpickled (like a class whose module the
    manager's process cannot import)."""

    def __reduce__(self):
        return (_refuse_to_load, ())


@ray.remote
def takes(value) -> int:
    return 1


def test_a_workflow_that_cannot_start_fails_clearly(workflow, workflow_id):
    with pytest.raises(workflow.WorkflowExecutionError, match="cannot be loaded here"):
        workflow.run(takes.bind(Unloadable()), workflow_id=workflow_id)
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED


def test_a_workflow_with_no_stored_graph_fails_to_resume_in_one_line(workflow, workflow_id):
    # Given a workflow row that holds no graph, its owner gone (a row another tool left)
    store = workflow._ensure()[1]
    task = NewTask(task_id="t", name="m.t", upstream=[], user_metadata={})
    store.create_workflow(workflow_id, "n", None, None, "t", [task], {}, owner="gone/1/x", ttl=-1)

    # When it is resumed, it fails naming what is missing, and is recorded FAILED
    with pytest.raises(workflow.WorkflowExecutionError, match="has no stored graph"):
        workflow.resume(workflow_id)
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED


# ---------------------------------------------------------------- lease checks


def _take_over(store, workflow_id: str) -> None:
    assert store.acquire(workflow_id, "another-manager")


@pytest.mark.parametrize(
    ("change", "stopped"),
    [
        # The manager's own outcome write releases the lease a moment before the execution
        # returns; a heartbeat reading the row then must not cancel it.
        (lambda store, wid: None, False),
        (lambda store, wid: store.finish(wid, None, WorkflowStatus.FAILED, None, "x"), False),
        (lambda store, wid: store.finish(wid, None, WorkflowStatus.CANCELED), True),
        (_take_over, True),
    ],
    ids=["successful", "failed", "canceled", "taken-over"],
)
def test_the_lease_check_stops_only_workflows_that_are_no_longer_its(
    workflow, store, workflow_id, change, stopped
):
    from executor.manager import WorkflowManager

    workflow.run(ok.bind(), workflow_id=workflow_id)
    change(store, workflow_id)

    async def check() -> bool:
        manager = WorkflowManager(workflow._config)
        finishing = asyncio.get_running_loop().create_future()
        execution = asyncio.ensure_future(finishing)
        manager.executions[workflow_id] = execution
        await manager.check_leases()
        if not execution.done():
            finishing.set_result("ok")
            await execution
        return execution.cancelled()

    assert asyncio.run(check()) is stopped


@ray.remote
def blocked_in_c(marks: str) -> str:
    """Blocks in one C call (a read from a pipe nobody writes), which an interrupt
    between bytecodes never reaches."""
    with open(os.path.join(marks, "pid"), "w") as handle:
        handle.write(str(os.getpid()))
    read_end, _ = os.pipe()
    os.read(read_end, 1)
    return "unreachable"


def test_cancel_stops_a_task_blocked_in_a_call_and_marks_its_tasks_canceled(
    workflow, workflow_id, marks, store
):
    m = str(marks)
    workflow.run_async(after_nap.bind(blocked_in_c.bind(m), m), workflow_id=workflow_id)
    pid = int(eventually(lambda: (marks / "pid").exists() and (marks / "pid").read_text()))

    workflow.cancel(workflow_id)

    eventually(lambda: process_gone(pid), what="the blocked worker to be stopped")
    assert workflow.get_status(workflow_id) == WorkflowStatus.CANCELED
    assert {task.status.value for task in store.load_tasks(workflow_id)} == {"CANCELED"}
    assert count(marks, "after-nap") == 0
