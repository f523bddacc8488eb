"""Linear chains of tasks run in one Ray call, every task still checkpointed on its own."""

from __future__ import annotations

import os

import ray

from executor import workflow as api
from tests.executor.test_options import source
from tests.waiting import count, mark


def _hop(calls: list[str]) -> list[str]:
    """Append the Ray call this task runs in."""
    return [*calls, ray.get_runtime_context().get_task_id()]


hop = ray.remote(_hop)


@ray.remote
def hop_nested(boxed: list) -> list[str]:
    """Takes its upstream inside a list: Ray hands it over as a ref."""
    return _hop(ray.get(boxed[0]))


@ray.remote
def join(left: list[str], right: list[str]) -> list[str]:
    return [*left, *right, ray.get_runtime_context().get_task_id()]


def test_a_linear_chain_runs_in_one_ray_call_and_checkpoints_every_task(
    workflow, workflow_id, store
):
    calls = workflow.run(hop.bind(hop.bind(hop.bind([]))), workflow_id=workflow_id)

    assert len(calls) == 3
    assert len(set(calls)) == 1
    tasks = store.load_tasks(workflow_id)
    assert {task.status.value for task in tasks} == {"SUCCESSFUL"}
    outputs = [workflow.get_output(workflow_id, task_id=task.task_id) for task in tasks]
    assert sorted(outputs, key=len) == [calls[:1], calls[:2], calls]
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL


def test_tasks_are_chained_only_where_they_could_not_run_apart(workflow, workflow_id):
    """Other Ray options, a nested input, or a second consumer each start a new call."""
    heavier = hop.options(num_cpus=0.5)
    first = hop.bind([])
    dag = join.bind(hop.bind(first), hop_nested.bind([heavier.bind(hop.bind(first))]))

    calls = workflow.run(dag, workflow_id=workflow_id)

    # [first, left] + [first, right, heavier, nested] + [join]: six calls
    assert calls[0] == calls[2]
    assert len(calls) == 7
    assert len(set(calls)) == 6, calls


def test_tasks_with_a_scheduling_strategy_are_placed_one_by_one(workflow, workflow_id):
    spread = hop.options(scheduling_strategy="SPREAD")

    calls = workflow.run(spread.bind(spread.bind(spread.bind([]))), workflow_id=workflow_id)

    assert len(set(calls)) == 3, calls


def test_a_chain_joins_its_upstream_when_it_is_the_only_consumer(workflow, workflow_id):
    """In a diamond, each branch is chained after nothing; the join after nothing either,
    but a task after the join joins its chain."""
    first = hop.bind([])
    dag = hop.bind(join.bind(hop.bind(first), hop.bind(first)))

    calls = workflow.run(dag, workflow_id=workflow_id)

    # first, left (+first again), right (+first), join, last
    assert calls[-1] == calls[-2], "the last task runs in the join's call"
    assert len({calls[0], calls[1], calls[3], calls[-1]}) == 4, calls


@ray.remote
def dies_once(x: int, marks: str) -> int:
    if mark(marks, "dies_once") == 1:
        os._exit(1)  # the worker process dies: Ray runs the whole call again
    return x + 1


def test_a_retried_chain_does_not_rerun_the_tasks_it_had_checkpointed(workflow, workflow_id, marks):
    dag = dies_once.bind(source.bind(str(marks)), str(marks))

    assert workflow.run(dag, workflow_id=workflow_id) == 11

    assert count(marks, "source") == 1, "checkpointed before the worker died"
    assert count(marks, "dies_once") == 2
    assert workflow.get_output(workflow_id, task_id="tests.executor.test_options.source") == 10


@ray.remote
def slow_add(x: int) -> int:
    import time

    time.sleep(0.5)  # the next task reaches the continuation before it is done
    return x + 1


@ray.remote
def continues(x: int):
    return api.continuation(slow_add.bind(slow_add.bind(x)))


@ray.remote
def after(x: int) -> int:
    return x * 10


def test_a_continuation_inside_a_chain_hands_its_output_to_the_next_task(
    workflow, workflow_id, store
):
    dag = after.bind(after.bind(continues.bind(1)))

    assert workflow.run(dag, workflow_id=workflow_id) == 300

    assert workflow.get_output(workflow_id, task_id=f"{__name__}.continues") == 3
    assert workflow.get_output(workflow_id, task_id=f"{__name__}.after") == 30
    statuses = {task.task_id: task.status.value for task in store.load_tasks(workflow_id)}
    assert len(statuses) == 5, statuses
    assert set(statuses.values()) == {"SUCCESSFUL"}, statuses
