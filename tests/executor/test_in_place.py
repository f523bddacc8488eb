"""A continuation's task run in the Ray call of the task that returned it (``worker.
InPlaceLauncher``): which ones, how deep, and a worker that dies in one."""

from __future__ import annotations

import math
import os
import signal
import time

import ray

from executor import workflow as api
from executor.worker import IN_PLACE_DEPTH
from tests.waiting import count, mark


def _ray_task() -> str:
    return ray.get_runtime_context().get_task_id()


@ray.remote
def calls(n: int) -> list[str]:
    """The Ray task each level of an ``n``-deep recursion ran in, outermost last."""
    if n == 0:
        return [_ray_task()]
    return api.continuation(append.bind(calls.bind(n - 1), _ray_task()))


@ray.remote
def append(found: list[str], task: str) -> list[str]:
    return [*found, task]


@ray.remote
def calls_changing_cpus(n: int) -> list[str]:
    """As ``calls``, each level asking for other CPUs than the one that returned it."""
    if n == 0:
        return [_ray_task()]
    inner = calls_changing_cpus.options(num_cpus=0.5 if n % 2 else 1).bind(n - 1)
    return api.continuation(append.bind(inner, _ray_task()))


@ray.remote
def two_calls(first_s: float) -> dict[str, str]:
    """The Ray task of this call and of the tasks its continuation binds: a first that
    sleeps ``first_s``, a second, and one that takes both."""
    return api.continuation(both.bind(_ray_task(), timed.bind(first_s), timed.bind(0)))


@ray.remote
def timed(seconds: float) -> str:
    """Its Ray task, after sleeping ``seconds``."""
    time.sleep(seconds)
    return _ray_task()


@ray.remote
def both(outer: str, first: str, second: str) -> dict[str, str]:
    return {"outer": outer, "first": first, "second": second, "both": _ray_task()}


@ray.remote
def returns_a_continuation(marks: str) -> str:
    mark(marks, "outer")
    return api.continuation(dies_once.bind(marks))


@ray.remote
def dies_once(marks: str) -> str:
    if mark(marks, "inner") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "done"


def test_a_continuations_task_runs_in_the_call_of_the_task_that_returned_it(workflow, workflow_id):
    found = workflow.run(calls.bind(5), workflow_id=workflow_id)

    assert len(found) == 6
    assert len(set(found)) == 1, found


@ray.remote
def two_then_one_dies(marks: str) -> list[str]:
    return api.continuation(pair.bind(noted.bind(marks, "first"), dies_once.bind(marks)))


@ray.remote
def noted(marks: str, name: str) -> str:
    mark(marks, name)
    return name


@ray.remote
def pair(first: str, second: str) -> list[str]:
    return [first, second]


def test_a_worker_that_dies_in_the_second_of_a_continuations_tasks_runs_only_that_again(
    workflow, workflow_id, marks
):
    # Held back behind the first, the second runs in place or on its own: either way
    # the first, checkpointed, does not run again.
    found = workflow.run(two_then_one_dies.bind(str(marks)), workflow_id=workflow_id)

    assert found == ["first", "done"]
    assert count(marks, "first") == 1
    assert count(marks, "inner") == 2
    assert workflow.get_status(workflow_id) == api.SUCCESSFUL


def test_a_continuation_of_quick_tasks_runs_in_the_call_that_returned_it(workflow, workflow_id):
    # The second is held back only while the first runs: on a loaded machine the first
    # (with its database write) may outlast that, so some of the runs may go elsewhere.
    runs = []
    for n in range(5):
        found = workflow.run(two_calls.bind(0), workflow_id=f"{workflow_id}-{n}")
        runs.append(found)
        if len(set(runs[-1].values())) == 1:
            break

    assert len(set(runs[-1].values())) == 1, runs


def test_tasks_held_back_behind_a_long_one_are_submitted_while_it_runs(workflow, workflow_id):
    found = workflow.run(two_calls.bind(2.0), workflow_id=workflow_id)

    # The first task bound runs in place; the second, held back, is submitted while it
    # runs (when it starts depends on a free CPU), not run in place after it.
    assert found["first"] == found["outer"]
    assert found["second"] != found["outer"]


def test_a_task_that_asks_for_other_resources_gets_a_call_of_its_own(workflow, workflow_id):
    found = workflow.run(calls_changing_cpus.bind(3), workflow_id=workflow_id)

    assert len(set(found)) == 4, found


def test_past_the_depth_a_recursion_goes_on_in_new_calls(workflow, workflow_id):
    levels = 2 * IN_PLACE_DEPTH + 10

    found = workflow.run(calls.bind(levels - 1), workflow_id=workflow_id)

    assert len(found) == levels
    assert len(set(found)) == math.ceil(levels / (IN_PLACE_DEPTH + 1)), found


def test_a_worker_that_dies_in_a_task_run_in_place_runs_only_that_task_again(
    workflow, workflow_id, marks
):
    assert workflow.run(returns_a_continuation.bind(str(marks)), workflow_id=workflow_id) == "done"

    assert count(marks, "outer") == 1  # checkpointed (its continuation) before the death
    assert count(marks, "inner") == 2
    # Its first run was in place: in the worker that ran the outer task.
    assert (marks / "inner").read_text().split()[0] == (marks / "outer").read_text().split()[0]
    assert workflow.get_status(workflow_id) == api.SUCCESSFUL
