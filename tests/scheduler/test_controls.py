"""Execution controls of registered workflows: ``scheduler.register(pool=, priority=,
timeout_s=)`` reach every run's tasks, and bad ones are refused at registration."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import ray

from executor import workflow as api
from executor.checkpoint import loads
from executor.status import WorkflowStatus
from scheduler.errors import InvalidScheduleError
from scheduler.registry import Registry
from tests.waiting import eventually


@ray.remote
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@ray.remote
def total(*values: float) -> float:
    return sum(values)


def ended(store, workflow_id: str):
    record = store.get_workflow(workflow_id)
    return record if record.status not in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING) else None


def test_a_registered_pool_and_priority_reach_every_task(workflow, services, registry, name, store):
    # Given a workflow registered in a pool, one task of which names another pool
    pool, other = f"pool-{uuid.uuid4().hex[:8]}", f"pool-{uuid.uuid4().hex[:8]}"
    store.set_pool(pool, 2, None)
    store.set_pool(other, 1, None)

    @registry.register(name=name, pool=pool, priority=3)
    def factory(run):
        own = nap.options(**api.options(pool=other)).bind(0.0)
        return total.bind(nap.bind(0.1), own)

    service = services(registry)

    # When it is triggered
    workflow_id = service.trigger(name)

    # Then its tasks ran in the pools they were given, at the registered priority
    assert eventually(lambda: ended(store, workflow_id), what="the run").status == (
        WorkflowStatus.SUCCESSFUL
    )
    assert sorted(task.pool for task in store.load_tasks(workflow_id)) == sorted(
        [pool, pool, other]
    )
    graph = loads(store.load_graph(workflow_id)[0])
    assert {spec.options.priority for spec in graph.tasks.values()} == {3}


def test_a_registered_timeout_fails_a_run_that_runs_past_it(
    workflow, services, registry, name, store
):
    registry.register(name=name, timeout_s=timedelta(seconds=1))(lambda run: nap.bind(30.0))
    service = services(registry)
    began = time.time()
    workflow_id = service.trigger(name)
    record = eventually(lambda: ended(store, workflow_id), timeout=30, what="the run")
    assert record.status == WorkflowStatus.FAILED
    assert "ran past its timeout of 1 s" in record.error
    assert time.time() - began < 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "ware house"}, "Invalid pool name 'ware house'"),
        ({"timeout_s": -5}, "timeout_s must be a positive number"),
        ({"priority": "high"}, "priority must be an integer"),
    ],
)
def test_bad_controls_are_refused_at_registration(options, message):
    with pytest.raises(InvalidScheduleError, match=message):
        Registry().register(name="bad", **options)(lambda run: None)
