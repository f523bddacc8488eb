"""Waiting: sleep, custom listeners, the HTTP mailbox, and waits that hold no CPU."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import ray

from executor.events import EventListener
from tests.waiting import eventually


@ray.remote
def gather(*args):
    return args


class FileAppears(EventListener):
    """Fires when a file exists; records the checkpoint callback next to it."""

    async def poll_for_event(self, path: str) -> str:
        import asyncio

        while not os.path.exists(path):
            await asyncio.sleep(0.05)
        with open(path) as handle:
            return handle.read()

    async def event_checkpointed(self, event: str) -> None:
        with open(event, "w") as handle:  # the event names where to leave the mark
            handle.write("checkpointed")


def test_key_concepts_events_example(workflow, workflow_id, tmp_path):
    # Given a workflow gated on a sleep and a custom listener
    trigger = tmp_path / "trigger"
    mark = tmp_path / "checkpointed"
    sleep_task = workflow.sleep(0.5)
    event_task = workflow.wait_for_event(FileAppears, str(trigger))
    ref = workflow.run_async(
        gather.bind(sleep_task, event_task, "hello world"), workflow_id=workflow_id
    )
    ready, _ = ray.wait([ref], timeout=2.0)
    assert not ready, "the gated task must wait for the event"

    # When the file appears
    trigger.write_text(str(mark))

    # Then the gated task runs with the event, and the listener heard it was checkpointed
    assert ray.get(ref, timeout=30) == (None, str(mark), "hello world")
    assert mark.read_text() == "checkpointed"
    assert workflow.get_output(workflow_id, task_id="workflow.wait_for_event") == str(mark)


def test_event_sent_before_the_wait_is_kept(workflow, workflow_id):
    approve = workflow.wait_for_event(workflow.HTTPListener, event_key="approve")
    ref = workflow.run_async(gather.bind(workflow.sleep(1.5), approve), workflow_id=workflow_id)
    workflow.send_event(workflow_id, "approve", {"by": "ops"})  # the wait has not started

    assert ray.get(ref, timeout=30) == (None, ("approve", {"by": "ops"}))


def test_each_event_is_consumed_by_exactly_one_wait(workflow, workflow_id, store):
    first = workflow.wait_for_event(workflow.HTTPListener, event_key="k")
    second = workflow.wait_for_event(workflow.HTTPListener, event_key="k")
    ref = workflow.run_async(gather.bind(first, second), workflow_id=workflow_id)
    workflow.send_event(workflow_id, "k", 1)
    workflow.send_event(workflow_id, "k", 2)
    workflow.send_event(workflow_id, "k", 3)

    assert sorted(payload for _, payload in ray.get(ref, timeout=30)) == [1, 2]
    events = store.list_events(workflow_id)
    assert [e.payload for e in events if e.consumed_by] == [1, 2]
    assert [e.payload for e in events if not e.consumed_by] == [3]
    assert len({e.consumed_by for e in events if e.consumed_by}) == 2


@pytest.mark.parametrize(
    ("payload", "message"),
    [({1, 2}, "must be JSON"), ("x" * (1 << 20), "limit is 1048576"), (float("nan"), "JSON")],
)
def test_send_event_rejects_bad_payloads(workflow, workflow_id, payload, message):
    workflow.run_async(
        workflow.wait_for_event(workflow.HTTPListener, event_key="k"), workflow_id=workflow_id
    )
    with pytest.raises(workflow.WorkflowError, match=message):
        workflow.send_event(workflow_id, "k", payload)
    workflow.send_event(workflow_id, "k", "fine")  # nothing was lost or blocked
    assert workflow.get_output(workflow_id) == ("k", "fine")


def test_send_event_to_unknown_or_finished_workflow(workflow, workflow_id):
    with pytest.raises(workflow.WorkflowNotFoundError, match="nope-"):
        workflow.send_event(f"nope-{workflow_id}", "k", 1)
    workflow.run(gather.bind(1), workflow_id=workflow_id)
    with pytest.raises(workflow.WorkflowError, match="SUCCESSFUL; it takes no more events"):
        workflow.send_event(workflow_id, "k", 1)


@ray.remote
def quick(x: int) -> int:
    return x + 1


def test_waiting_workflows_hold_no_cpu(workflow, workflow_id, store):
    # Given more waiting workflows than the cluster has CPUs
    cpus = int(ray.cluster_resources()["CPU"])
    waiting = [f"{workflow_id}-w{i}" for i in range(cpus * 3)]
    refs = [
        workflow.run_async(
            gather.bind(workflow.wait_for_event(workflow.HTTPListener, event_key="go")),
            workflow_id=w,
        )
        for w in waiting
    ]
    eventually(
        lambda: all(
            store.get_task(w, "workflow.wait_for_event").status.value == "WAITING" for w in waiting
        ),
        what="every waiter to reach its wait",
    )

    # When an unrelated workflow of ten tasks runs
    node = quick.bind(0)
    for _ in range(9):
        node = quick.bind(node)
    started = time.monotonic()
    assert workflow.run(node, workflow_id=workflow_id) == 10

    # Then it finishes promptly, and the waiters are still waiting, then all release
    assert time.monotonic() - started < 20
    assert all(workflow.get_status(w) == workflow.WorkflowStatus.RUNNING for w in waiting)
    for w in waiting:
        workflow.send_event(w, "go", w)
    assert [ray.get(r, timeout=60)[0][1] for r in refs] == waiting


def test_sleep_rejects_what_is_not_a_number(workflow):
    for bad in ("10", None, True):
        with pytest.raises(TypeError, match="takes a number of seconds"):
            workflow.sleep(bad)


def test_a_negative_sleep_ends_at_once(workflow, workflow_id):
    started = time.monotonic()
    workflow.run(gather.bind(workflow.sleep(-5)), workflow_id=workflow_id)
    assert time.monotonic() - started < 5


def test_wait_for_event_rejects_a_non_listener(workflow):
    # Ray Workflows raised TypeError, with this message.
    message = "Event listener type is object, which is not a subclass of workflow.EventListener"
    with pytest.raises(TypeError, match=re.escape(message)):
        workflow.wait_for_event(object)
    with pytest.raises(TypeError, match=r"not a subclass of workflow\.EventListener"):
        workflow.wait_for_event("listener")


def test_sleep_is_durable_and_checkpointed(workflow, workflow_id, store, tmp_path: Path):
    started = time.time()
    workflow.run(gather.bind(workflow.sleep(1.0)), workflow_id=workflow_id)
    elapsed = time.time() - started
    task = store.get_task(workflow_id, "workflow.sleep")
    assert task.status.value == "SUCCESSFUL"
    assert 1.0 <= elapsed < 15


class CommitsOnSecondTry(EventListener):
    """An event whose commit fails the first time (as a crash between the event's
    checkpoint and its commit would leave it)."""

    async def poll_for_event(self, folder: str) -> str:
        with open(os.path.join(folder, "polls"), "a") as handle:
            handle.write("x")
        return "the event"

    async def event_checkpointed(self, event: str) -> None:
        commits = os.path.join(self.folder, "commits")
        with open(commits, "a") as handle:
            handle.write("x")
        if len(Path(commits).read_text()) == 1:
            raise ConnectionError("the queue's commit failed")

    folder = ""


def test_an_event_not_committed_is_committed_on_resume_not_polled_again(
    workflow, workflow_id, tmp_path
):
    CommitsOnSecondTry.folder = str(tmp_path)
    dag = gather.bind(workflow.wait_for_event(CommitsOnSecondTry, str(tmp_path)))
    with pytest.raises(workflow.WorkflowExecutionError, match="commit failed"):
        workflow.run(dag, workflow_id=workflow_id)

    assert workflow.resume(workflow_id) == ("the event",)
    assert (tmp_path / "polls").read_text() == "x"
    assert (tmp_path / "commits").read_text() == "xx"


class BlocksItsThread(EventListener):
    """A listener that blocks instead of awaiting, as Ray Workflows' own tests did."""

    async def poll_for_event(self, path: str) -> str:
        while not os.path.exists(path):
            time.sleep(0.05)
        return "unblocked"


def test_a_blocking_listener_holds_up_only_itself(workflow, workflow_id, tmp_path):
    release = tmp_path / "release"
    blocked = workflow.run_async(
        gather.bind(workflow.wait_for_event(BlocksItsThread, str(release))),
        workflow_id=workflow_id,
    )
    # Meanwhile other workflows, and their waits, go on.
    assert workflow.run(
        gather.bind(workflow.sleep(0.2), "other"), workflow_id=f"{workflow_id}-b"
    ) == (
        None,
        "other",
    )
    release.touch()
    assert ray.get(blocked, timeout=60) == ("unblocked",)
