"""Running a workflow again: retry with current code, clear, fork (``executor.rerun``).

The graph a retry rebuilds comes from a ``rebuild`` callable, as the scheduler gives one
for registered workflows (tests/scheduler/test_rerun.py covers that path).
"""

from __future__ import annotations

import pytest
import ray

from executor import workflow as api
from executor.config import StoreConfig, close
from executor.status import TaskStatus
from scheduler.registry import Registry
from tests.executor import scripts
from tests.waiting import count, mark


@ray.remote
def step(marks: str, name: str, value: int) -> int:
    mark(marks, name)
    return value + 1


@ray.remote
def buggy(marks: str, name: str, value: int) -> int:
    mark(marks, name)
    raise ValueError("the bug")


def named(function, task_id: str):
    return function.options(**api.options(task_id=task_id))


def pipeline(marks: str, third=buggy, first_value: int = 0):
    """s1 -> s2 -> s3 -> s4, with explicit ids (the same whatever function runs s3)."""
    s1 = named(step, "s1").bind(marks, "s1", first_value)
    s2 = named(step, "s2").bind(marks, "s2", s1)
    s3 = named(third, "s3").bind(marks, "s3", s2)
    return named(step, "s4").bind(marks, "s4", s3)


def rebuilt(dag, version: str = "v2"):
    """A ``Rebuild`` that returns ``dag`` (the code as it is "now")."""

    def rebuild(record, params):
        return dag, version, {**record.user_metadata, "params": params}

    return rebuild


def counts(marks, *names: str) -> list[int]:
    return [count(marks, name) for name in names]


def test_retry_with_current_code_runs_only_what_had_not_finished(workflow, workflow_id, marks):
    m = str(marks)
    with pytest.raises(api.WorkflowExecutionError, match="the bug"):
        workflow.run(pipeline(m), workflow_id=workflow_id, metadata={"team": "data"})

    ref = workflow.retry(workflow_id, rebuild=rebuilt(pipeline(m, third=step)))

    assert ray.get(ref) == 4
    assert counts(marks, "s1", "s2", "s3", "s4") == [1, 1, 2, 1]
    assert workflow.get_status(workflow_id) == api.SUCCESSFUL
    # The failed attempt of s3 stays as history, with the code it ran with.
    [earlier] = workflow_store(workflow).task_attempts(workflow_id, "s3")
    assert earlier.status == TaskStatus.FAILED
    assert "the bug" in earlier.error
    record = workflow_store(workflow).get_workflow(workflow_id)
    assert record.code_version == "v2"


def test_a_retry_that_contradicts_a_checkpoint_is_refused_and_changes_nothing(
    workflow, workflow_id, marks
):
    m = str(marks)
    with pytest.raises(api.WorkflowExecutionError):
        workflow.run(pipeline(m), workflow_id=workflow_id)
    # Now s2 takes its input from a new task instead of s1.
    s0 = named(step, "s0").bind(m, "s0", 0)
    s2 = named(step, "s2").bind(m, "s2", s0)
    changed = named(step, "s4").bind(m, "s4", named(step, "s3").bind(m, "s3", s2))

    with pytest.raises(api.WorkflowNotRetryableError, match="task 's2' finished with upstream"):
        workflow.retry(workflow_id, rebuild=rebuilt(changed))

    assert workflow.get_status(workflow_id) == api.FAILED
    assert workflow_store(workflow).task_attempts(workflow_id) == []


def test_changed_params_run_the_tasks_they_reach_again(workflow, workflow_id, marks):
    m = str(marks)
    with pytest.raises(api.WorkflowExecutionError):
        workflow.run(pipeline(m), workflow_id=workflow_id)

    ref = workflow.retry(workflow_id, rebuild=rebuilt(pipeline(m, third=step, first_value=10)))

    assert ray.get(ref) == 14
    assert counts(marks, "s1", "s2", "s3", "s4") == [2, 2, 2, 1]


def test_retry_of_an_unregistered_workflow_is_refused(workflow, workflow_id, marks):
    with pytest.raises(api.WorkflowExecutionError):
        workflow.run(pipeline(str(marks)), workflow_id=workflow_id)
    with pytest.raises(api.WorkflowNotRetryableError, match="not started from a registered"):
        workflow.retry(workflow_id, rebuild=Registry().rebuild)


def test_clear_runs_a_task_and_its_downstream_again(workflow, workflow_id, marks):
    m = str(marks)
    assert workflow.run(pipeline(m, third=step), workflow_id=workflow_id) == 4

    assert ray.get(workflow.clear(workflow_id, ["s2"])) == 4

    assert counts(marks, "s1", "s2", "s3", "s4") == [1, 2, 2, 2]
    history = workflow_store(workflow).task_attempts(workflow_id)
    assert sorted(a.task_id for a in history) == ["s2", "s3", "s4"]
    assert {a.status for a in history} == {TaskStatus.SUCCESSFUL}


def test_clear_without_downstream_runs_only_the_task(workflow, workflow_id, marks):
    m = str(marks)
    assert workflow.run(pipeline(m, third=step), workflow_id=workflow_id) == 4

    assert ray.get(workflow.clear(workflow_id, ["s4"], downstream=False)) == 4
    assert counts(marks, "s1", "s2", "s3", "s4") == [1, 1, 1, 2]


def test_clear_of_a_middle_task_without_downstream_runs_it_before_the_run_ends(
    workflow, workflow_id, marks
):
    m = str(marks)
    assert workflow.run(pipeline(m, third=step), workflow_id=workflow_id) == 4

    assert ray.get(workflow.clear(workflow_id, ["s2"], downstream=False)) == 4

    assert counts(marks, "s1", "s2", "s3", "s4") == [1, 2, 1, 1]
    assert workflow_store(workflow).get_task(workflow_id, "s2").status == TaskStatus.SUCCESSFUL


@ray.remote
def countdown(marks: str, n: int) -> int:
    mark(marks, f"countdown-{n}")
    if n == 0:
        return 0
    return api.continuation(countdown.bind(marks, n - 1))


@ray.remote
def done(marks: str, value: int) -> str:
    mark(marks, "done")
    return f"done {value}"


def test_clearing_a_continuations_task_reruns_the_rest_of_it(workflow, workflow_id, marks):
    m = str(marks)
    assert workflow.run(done.bind(m, countdown.bind(m, 2)), workflow_id=workflow_id) == "done 0"
    inner = f"{__name__}.countdown_1"  # countdown(1), inside countdown(2)'s continuation

    assert ray.get(workflow.clear(workflow_id, [inner])) == "done 0"

    runs = [count(marks, f"countdown-{n}") for n in (2, 1, 0)]
    assert runs == [1, 2, 2]
    assert count(marks, "done") == 2


def test_clear_of_an_unknown_task_changes_nothing(workflow, workflow_id, marks):
    assert workflow.run(pipeline(str(marks), third=step), workflow_id=workflow_id) == 4
    with pytest.raises(api.TaskNotFoundError):
        workflow.clear(workflow_id, ["nope"])
    assert workflow.get_status(workflow_id) == api.SUCCESSFUL


def test_fork_from_a_task_leaves_the_origin_alone(workflow, workflow_id, marks):
    m = str(marks)
    assert workflow.run(pipeline(m, third=step), workflow_id=workflow_id) == 4

    new_id = workflow.fork(workflow_id, from_task="s3")

    assert new_id == f"{workflow_id}~fork1"
    assert workflow.get_output(new_id) == 4
    assert counts(marks, "s1", "s2", "s3", "s4") == [1, 1, 2, 2]
    store = workflow_store(workflow)
    assert store.get_workflow(new_id).forked_from == workflow_id
    assert store.forks(workflow_id) == [new_id]
    assert store.task_attempts(workflow_id) == []
    assert workflow.fork(workflow_id, from_task="s4") == f"{workflow_id}~fork2"


def test_fork_with_params_needs_current_code(workflow, workflow_id, marks):
    assert workflow.run(pipeline(str(marks), third=step), workflow_id=workflow_id) == 4
    with pytest.raises(api.InvalidInputError, match="params need code='current'"):
        workflow.fork(workflow_id, params={"x": 1}, code="recorded")


def test_a_running_workflow_is_not_retried_or_cleared(workflow, workflow_id, marks, tmp_path):
    gate = tmp_path / "open"
    ref = workflow.run_async(waits.bind(str(gate)), workflow_id=workflow_id)
    for call in (
        lambda: workflow.retry(workflow_id, rebuild=rebuilt(waits.bind(str(gate)))),
        lambda: workflow.clear(workflow_id, [f"{__name__}.waits"]),
    ):
        with pytest.raises(api.WorkflowStillActiveError):
            call()
    gate.touch()
    assert ray.get(ref) == "opened"


@ray.remote
def waits(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return "opened"


def workflow_store(workflow):
    from executor.config import handles

    return handles(workflow._config).store


CLEAR_THEN_DIE = """
import os, signal, sys
import ray
from executor import workflow
from executor.config import handles
from tests.waiting import mark

@ray.remote
def step(marks, name, value):
    mark(marks, name)
    return value + 1

def named(function, task_id):
    return function.options(**workflow.options(task_id=task_id))

url, storage, marks = sys.argv[1:4]
ray.init(address="local", num_cpus=2, include_dashboard=False)
workflow.init(url, storage=storage)
s1 = named(step, "s1").bind(marks, "s1", 0)
s2 = named(step, "s2").bind(marks, "s2", s1)
assert workflow.run(named(step, "s3").bind(marks, "s3", s2), workflow_id="cleared") == 3

store = handles(workflow._config).store
applied = store.rerun

def rerun_then_die(*args, **kwargs):
    applied(*args, **kwargs)  # the checkpoints are dropped and the rows reset...
    os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before the resume

store.rerun = rerun_then_die
workflow.clear("cleared", ["s2"])
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def own_db(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'own.db'}"
    return request.getfixturevalue("scratch_postgresql_url")


@pytest.mark.slow
def test_a_crash_between_clearing_and_resuming_leaves_a_resumable_run(
    ray_address, own_db, tmp_path, marks
):
    storage = str(tmp_path / "blobs")
    process = scripts.start(CLEAR_THEN_DIE, tmp_path, [own_db, storage, str(marks)])
    process.wait(timeout=180)
    scripts.kill_group(process)
    assert counts(marks, "s1", "s2", "s3") == [1, 1, 1], (tmp_path / "script.log").read_text()

    api.init(own_db, storage=storage)
    try:
        status = api.get_status("cleared")
        assert status in (api.RESUMABLE, api.FAILED)
        assert api.resume("cleared") == 3
        assert counts(marks, "s1", "s2", "s3") == [1, 2, 2]
    finally:
        close(StoreConfig.resolve(own_db, storage))
