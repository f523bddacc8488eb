"""Continuations as Ray Workflows ran them: caught by ``catch_exceptions`` at the task that
returned them, and followed to their final value wherever their task's output goes."""

from __future__ import annotations

import time

import pytest
import ray

from executor import workflow as api
from tests.waiting import count, mark


class Broken(Exception):
    pass


@ray.remote
def count_up(n: int, to: int) -> int:
    if n < to:
        return api.continuation(count_up.bind(n + 1, to))
    return n * 10


@ray.remote
def fail_at(n: int, to: int) -> int:
    if n < to:
        return api.continuation(fail_at.bind(n + 1, to))
    raise Broken(f"failed at {n}")


@ray.remote
def add(a: int, b: int) -> int:
    return a + b


@ray.remote
def boom(x: int) -> int:
    raise Broken(f"boom {x}")


@ray.remote
def via_failing_upstream(marks: str) -> int:
    """A continuation whose error comes from an upstream task, not its output task."""
    mark(marks, "outer")
    return api.continuation(add.bind(boom.bind(1), 2))


@ray.remote
def describe(pair: tuple) -> str:
    value, error = pair
    return f"{value}|{type(error).__name__}|{error}"


def caught(function):
    return function.options(**api.options(catch_exceptions=True))


def test_a_caught_continuation_returns_its_final_value(workflow, workflow_id):
    out = workflow.run(caught(count_up).bind(1, 4), workflow_id=workflow_id)

    assert out == (40, None)
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL


def test_an_error_deep_in_nested_continuations_is_caught_at_the_outer_task(workflow, workflow_id):
    out = workflow.run(describe.bind(caught(fail_at).bind(1, 3)), workflow_id=workflow_id)

    assert out == "None|Broken|failed at 3"
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL


def test_an_error_of_an_upstream_task_inside_the_continuation_is_caught(
    workflow, workflow_id, marks
):
    out = workflow.run(caught(via_failing_upstream).bind(str(marks)), workflow_id=workflow_id)

    value, error = out
    assert value is None
    assert isinstance(error, Broken)
    assert str(error) == "boom 1"
    # Caught and checkpointed: running the id again replays it without running anything.
    assert workflow.run(caught(via_failing_upstream).bind(str(marks)), workflow_id=workflow_id)
    assert count(marks, "outer") == 1


def test_an_uncaught_continuation_error_still_fails_the_workflow(workflow, workflow_id):
    with pytest.raises(api.WorkflowExecutionError) as caught:
        workflow.run(fail_at.bind(1, 2), workflow_id=workflow_id)
    assert isinstance(caught.value.__cause__, Broken)
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED


@ray.remote
def fetch_list(items: list) -> list:
    return [ray.get(item) for item in items]


@ray.remote
def fetch_dict(items: dict) -> dict:
    return {key: ray.get(item) for key, item in items.items()}


def test_a_continuations_output_inside_a_list_arrives_as_its_final_value(workflow, workflow_id):
    dag = fetch_list.bind([count_up.bind(1, 3), add.bind(1, 2), count_up.bind(5, 5)])

    assert workflow.run(dag, workflow_id=workflow_id) == [30, 3, 50]


def test_a_continuations_output_inside_a_dict_arrives_as_its_final_value(workflow, workflow_id):
    dag = fetch_dict.bind({"deep": count_up.bind(0, 4), "flat": add.bind(2, 2)})

    assert workflow.run(dag, workflow_id=workflow_id) == {"deep": 40, "flat": 4}


def test_a_nested_output_resolves_on_resume_from_its_checkpoint(workflow, workflow_id):
    first = fetch_list.bind([count_up.bind(1, 3)])
    assert workflow.run(first, workflow_id=workflow_id) == [30]
    assert workflow.get_output(workflow_id) == [30]


@ray.remote
def a_ref() -> ray.ObjectRef:
    return ray.put(271828)


@ray.remote
def sleepy() -> str:
    time.sleep(1.5)
    return "slept"


@ray.remote
def slow() -> str:
    return api.continuation(sleepy.bind())


@ray.remote
def receive(ref: object, value: str) -> tuple:
    return isinstance(ref, ray.ObjectRef), ray.get(ref), value


def test_a_ref_output_stays_a_ref_while_the_task_waits_for_a_continuation(workflow, workflow_id):
    """The task starts before ``slow``'s continuation ends and submits itself again to
    wait for it; ``a_ref``'s output, an ObjectRef, must still arrive as that ref (as in
    Ray), not resolved a second time."""
    out = workflow.run(receive.bind(a_ref.bind(), slow.bind()), workflow_id=workflow_id)

    assert out == (True, 271828, "slept")
