"""``workflow.options``: task ids, metadata, catch_exceptions, checkpoint; Ray's retries."""

from __future__ import annotations

import os
import time

import pytest
import ray

from executor import workflow as api
from tests.waiting import count, eventually, mark


@ray.remote
def double(x: int) -> int:
    return 2 * x


@api.options(task_id="decorated", metadata={"owner": "ops"})
@ray.remote
def decorated(x: int) -> int:
    return x + 1


def test_options_unpacked_into_ray_options(workflow, workflow_id):
    dag = double.options(
        **workflow.options(task_id="custom", metadata={"team": "data", "n": 1})
    ).bind(21)

    assert workflow.run(dag, workflow_id=workflow_id, metadata={"run": "yes"}) == 42
    assert workflow.get_output(workflow_id, task_id="custom") == 42

    task = workflow.get_metadata(workflow_id, task_id="custom")
    assert task["user_metadata"] == {"team": "data", "n": 1}
    assert task["status"] == "SUCCESSFUL"
    start, end = task["stats"]["start_time"], task["stats"]["end_time"]
    assert isinstance(start, float)
    assert isinstance(end, float)
    assert start <= end

    run = workflow.get_metadata(workflow_id)
    assert run["user_metadata"] == {"run": "yes"}
    assert run["status"] == workflow.WorkflowStatus.SUCCESSFUL
    assert isinstance(run["stats"]["start_time"], float)
    assert isinstance(run["stats"]["end_time"], float)
    assert run["stats"]["start_time"] <= start <= end <= run["stats"]["end_time"]


def test_options_as_a_decorator(workflow, workflow_id):
    assert workflow.run(double.bind(decorated.bind(1)), workflow_id=workflow_id) == 4

    assert workflow.get_output(workflow_id, task_id="decorated") == 2
    assert workflow.get_metadata(workflow_id, "decorated")["user_metadata"] == {"owner": "ops"}
    # The decorator keeps a function's Ray options.
    ray_opts = decorated.options(num_cpus=0.5)
    assert workflow.run(ray_opts.bind(5)) == 6


def test_unknown_option_is_refused(workflow):
    with pytest.raises(workflow.WorkflowError, match="Invalid workflow option"):
        workflow.options(task_name="x")


def test_a_repeated_task_id_is_numbered_as_ray_numbered_it(workflow, workflow_id):
    named = double.options(**workflow.options(task_id="same"))
    assert workflow.run(named.bind(named.bind(named.bind(1))), workflow_id=workflow_id) == 8
    # Upstream first: the innermost task is "same".
    assert workflow.get_output(workflow_id, task_id="same") == 2
    assert workflow.get_output(workflow_id, task_id="same_1") == 4
    assert workflow.get_output(workflow_id, task_id="same_2") == 8


class Boom(Exception):
    pass


@ray.remote
def explode(x: int) -> int:
    raise Boom(f"boom {x}")


@ray.remote
def inspect_caught(pair: tuple) -> str:
    value, error = pair
    return f"{value}|{type(error).__name__}|{error}"


def test_catch_exceptions_returns_the_error(workflow, workflow_id):
    catching = explode.options(**workflow.options(catch_exceptions=True))

    out = workflow.run(inspect_caught.bind(catching.bind(3)), workflow_id=workflow_id)

    assert out == "None|Boom|boom 3"
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    value, error = workflow.get_output(workflow_id, task_id=f"{__name__}.explode")
    assert value is None
    assert isinstance(error, Boom)


def test_catch_exceptions_returns_the_value(workflow):
    catching = double.options(**workflow.options(catch_exceptions=True))
    assert workflow.run(catching.bind(4)) == (8, None)


@ray.remote(max_retries=3, retry_exceptions=True)
def flaky(marks: str) -> str:
    attempt = mark(marks, "flaky")
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} failed")
    return f"ok on attempt {attempt}"


def test_retry_exceptions_retries_an_application_error(workflow, workflow_id, marks):
    assert workflow.run(flaky.bind(str(marks)), workflow_id=workflow_id) == "ok on attempt 3"

    assert count(marks, "flaky") == 3
    assert workflow.get_metadata(workflow_id, f"{__name__}.flaky")["attempts"] == 3


def test_retry_exceptions_naming_a_class_only_cloudpickle_can_carry(workflow, workflow_id, marks):
    """A class defined in a function (or a driver's ``__main__``) cannot be pickled by
    reference; the task's context still reaches the worker, and the retry still matches."""

    class Transient(Exception):
        pass

    @ray.remote(max_retries=2, retry_exceptions=[Transient])
    def shaky(marks: str) -> str:
        attempt = mark(marks, "shaky")
        if attempt < 2:
            raise Transient(f"attempt {attempt} failed")
        return f"ok on attempt {attempt}"

    assert workflow.run(shaky.bind(str(marks)), workflow_id=workflow_id) == "ok on attempt 2"
    assert count(marks, "shaky") == 2


def test_retries_stop_after_max_retries(workflow, workflow_id, marks):
    always = flaky.options(max_retries=1)
    with pytest.raises(workflow.WorkflowExecutionError) as caught:
        workflow.run(always.bind(str(marks)), workflow_id=workflow_id)

    assert isinstance(caught.value.__cause__, ConnectionError)
    assert count(marks, "flaky") == 2
    task = workflow.get_metadata(workflow_id, f"{__name__}.flaky")
    assert task["attempts"] == 2
    assert task["status"] == "FAILED"


@ray.remote
def fails_once_counted(marks: str) -> int:
    mark(marks, "plain")
    raise Boom("not retried")


def test_application_errors_are_not_retried_by_default(workflow, workflow_id, marks):
    # Ray's default max_retries (3) is for system failures only.
    with pytest.raises(workflow.WorkflowExecutionError, match="not retried") as caught:
        workflow.run(fails_once_counted.bind(str(marks)), workflow_id=workflow_id)

    assert type(caught.value.__cause__) is Boom
    assert count(marks, "plain") == 1
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED
    task = workflow.get_metadata(workflow_id, f"{__name__}.fails_once_counted")
    assert task["attempts"] == 1
    assert task["status"] == "FAILED"


@ray.remote
def source(marks: str) -> int:
    mark(marks, "source")
    return 10


@ray.remote
def uncheckpointed(x: int, marks: str) -> int:
    mark(marks, "uncheckpointed")
    return x + 1


@ray.remote
def gate(x: int, marks: str) -> int:
    mark(marks, "gate")
    if not os.path.exists(os.path.join(marks, "open")):
        raise RuntimeError("gate is closed")
    return x * 2


def test_checkpoint_false_task_reruns_on_resume(workflow, workflow_id, marks):
    """Given source -> uncheckpointed (checkpoint=False) -> gate, and gate fails once."""
    m = str(marks)
    middle = uncheckpointed.options(**workflow.options(checkpoint=False))
    dag = gate.bind(middle.bind(source.bind(m), m), m)
    with pytest.raises(workflow.WorkflowExecutionError, match="gate is closed"):
        workflow.run(dag, workflow_id=workflow_id)

    # When the cause is gone and the workflow resumes
    (marks / "open").touch()
    assert workflow.resume(workflow_id) == 22

    # Then only the task without a checkpoint ran again, besides the failed one.
    assert count(marks, "source") == 1
    assert count(marks, "uncheckpointed") == 2
    assert count(marks, "gate") == 2
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL


@ray.remote
def slow_stamp() -> float:
    time.sleep(0.3)
    return time.time()


def test_task_stats_bracket_the_run(workflow, workflow_id):
    before = time.time()
    stamped = workflow.run(slow_stamp.bind(), workflow_id=workflow_id)
    after = time.time()

    stats = workflow.get_metadata(workflow_id, f"{__name__}.slow_stamp")["stats"]
    assert before <= stats["start_time"] <= stamped <= stats["end_time"] <= after
    assert stats["end_time"] - stats["start_time"] >= 0.3


@ray.remote
def plain_for_timeline(x: int) -> int:
    return x


@ray.remote
def durable_for_timeline(x: int) -> int:
    return x


def _timeline_names_once(plain_name: str) -> set[str]:
    """Names in Ray's timeline, once a plain task started after the workflow shows in it."""
    ray.get(plain_for_timeline.options(name=plain_name).remote(1))

    def names_once_plain_shows() -> set[str] | None:
        # An event's "cat" is task::<the task's name>, its "name" the function's.
        events = ray.timeline()
        names = {str(event.get("cat", "")).removeprefix("task::") for event in events}
        names |= {str(event.get("name")) for event in events}
        return names if plain_name in names else None

    # Task events reach the GCS about once a second.
    return eventually(
        names_once_plain_shows, timeout=10, what="the plain task in Ray's timeline", interval=0.2
    )


def test_ray_keeps_no_task_events_for_gnomon_tasks_by_default(workflow, workflow_id):
    """GNOMON_RAY_TASK_EVENTS is off: Ray's timeline shows a plain task, not Gnomon's."""
    name = f"off-{workflow_id}"
    dag = durable_for_timeline.options(name=name).bind(2)
    assert api.run(dag, workflow_id=workflow_id) == 2
    names = _timeline_names_once(f"plain-{workflow_id}")
    assert name not in names
    assert not any("Manager" in found for found in names)


def test_a_tasks_own_enable_task_events_option_wins(workflow, workflow_id):
    name = f"on-{workflow_id}"
    dag = durable_for_timeline.options(name=name, enable_task_events=True).bind(3)
    assert api.run(dag, workflow_id=workflow_id) == 3
    assert name in _timeline_names_once(f"plain-{workflow_id}")
