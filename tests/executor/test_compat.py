"""What a Ray Workflows 2.47 program can observe, as Ray's own source wrote it: module
constants, task ids, metadata keys, argument checks, and reading outputs."""

from __future__ import annotations

import time

import pytest
import ray

from executor import workflow as api


@ray.remote
def add(a: int, b: int) -> int:
    return a + b


def test_the_statuses_are_module_constants():
    assert [api.RUNNING, api.PENDING, api.SUCCESSFUL, api.FAILED, api.CANCELED, api.RESUMABLE] == [
        api.WorkflowStatus.RUNNING,
        api.WorkflowStatus.PENDING,
        api.WorkflowStatus.SUCCESSFUL,
        api.WorkflowStatus.FAILED,
        api.WorkflowStatus.CANCELED,
        api.WorkflowStatus.RESUMABLE,
    ]


# -------------------------------------------------------------------- task ids


def test_default_ids_slugify_the_qualified_name(workflow, workflow_id):
    @ray.remote
    def local_add(a: int, b: int) -> int:
        return a + b

    dag = local_add.bind(local_add.bind(1, 2), 3)
    assert workflow.run(dag, workflow_id=workflow_id) == 6

    base = f"{__name__}.test_default_ids_slugify_the_qualified_name.locals.local_add"
    assert workflow.get_output(workflow_id, task_id=base) == 3
    assert workflow.get_output(workflow_id, task_id=f"{base}_1") == 6


@ray.remote
def factorial(n: int) -> int:
    if n == 1:
        return 1
    return api.continuation(multiply.bind(n, factorial.bind(n - 1)))


@ray.remote
def multiply(a: int, b: int) -> int:
    return a * b


def test_continuation_tasks_are_numbered_on_without_a_prefix(workflow, workflow_id):
    """As in Ray's test_get_named_task_default: each level of the recursion is the base
    numbered on; each level's output is what its continuation computed."""
    assert workflow.run(factorial.bind(5), workflow_id=workflow_id) == 120
    base = f"{__name__}.factorial"
    ids = [base, *(f"{base}_{i}" for i in range(1, 5))]
    assert [workflow.get_output(workflow_id, task_id=t) for t in ids] == [120, 24, 6, 2, 1]
    # Each level's multiply is numbered as its level was expanded, the outermost first.
    assert workflow.get_output(workflow_id, task_id=f"{__name__}.multiply") == 120
    assert workflow.get_output(workflow_id, task_id=f"{__name__}.multiply_3") == 2


@ray.remote
def recurse(n: int) -> int:
    if n == 0:
        return 0
    named = recurse.options(**api.options(task_id="level"))
    return api.continuation(named.bind(n - 1))


def test_an_explicit_id_in_a_recursion_never_reuses_an_earlier_levels_checkpoint(
    workflow, workflow_id
):
    named = recurse.options(**api.options(task_id="level"))
    assert workflow.run(named.bind(3), workflow_id=workflow_id) == 0
    assert [workflow.get_output(workflow_id, task_id=t) for t in ("level", "level_1")] == [0, 0]
    assert workflow.get_metadata(workflow_id, "level_3")["status"] == "SUCCESSFUL"
    with pytest.raises(ValueError, match="No such task_id 'level_4'"):
        workflow.get_metadata(workflow_id, "level_4")


# --------------------------------------------------------------------- metadata


@ray.remote
def slow(x: int) -> int:
    time.sleep(1)
    return x


def test_workflow_metadata_has_rays_keys_and_times(workflow, workflow_id):
    ref = workflow.run_async(slow.bind(1), workflow_id=workflow_id, metadata={"k": "v"})
    running = workflow.get_metadata(workflow_id)
    assert (running["status"], running["user_metadata"]) == ("RUNNING", {"k": "v"})
    assert type(running["status"]) is str
    assert set(running["stats"]) == {"start_time"}

    assert ray.get(ref) == 1
    done = workflow.get_metadata(workflow_id)
    assert done["status"] == "SUCCESSFUL"
    assert done["stats"]["end_time"] >= done["stats"]["start_time"] + 1


def test_task_metadata_has_its_options_and_upstream(workflow, workflow_id):
    options = api.options(task_id="total", metadata={"owner": "ops"})
    dag = add.options(**options, max_retries=5).bind(slow.bind(1), 2)
    assert workflow.run(dag, workflow_id=workflow_id) == 3

    task = workflow.get_metadata(workflow_id, "total")
    assert task["task_id"] == "total"
    assert task["user_metadata"] == {"owner": "ops"}
    assert task["workflow_refs"] == [f"{__name__}.slow"]
    assert task["task_options"]["task_type"] == "FUNCTION"
    assert task["task_options"]["max_retries"] == 5
    assert task["task_options"]["catch_exceptions"] is False
    assert task["task_options"]["ray_options"]["max_retries"] == 5
    assert set(task["stats"]) == {"start_time", "end_time"}


def test_task_metadata_that_is_not_json_is_refused_when_the_options_are_built(workflow):
    with pytest.raises(ValueError, match="metadata must be JSON serializable"):
        api.options(metadata={"x": object()})
    with pytest.raises(ValueError, match="metadata must be a dict"):
        api.options(metadata=["x"])


@ray.remote
def fails_once(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first time")
    return "second time"


def test_resuming_records_a_new_start_time(workflow, workflow_id, tmp_path):
    with pytest.raises(api.WorkflowExecutionError):
        workflow.run(fails_once.bind(str(tmp_path / "marker")), workflow_id=workflow_id)
    failed = workflow.get_metadata(workflow_id)["stats"]
    assert failed["end_time"] >= failed["start_time"]

    ref = workflow.resume_async(workflow_id)
    assert workflow.get_status(workflow_id) == api.RUNNING
    assert ray.get(ref) == "second time"
    resumed = workflow.get_metadata(workflow_id)["stats"]
    assert resumed["start_time"] >= failed["end_time"]


def test_a_canceled_workflow_has_no_end_time(workflow, workflow_id):
    workflow.run_async(slow.bind(1), workflow_id=workflow_id)
    workflow.cancel(workflow_id)
    metadata = workflow.get_metadata(workflow_id)
    assert metadata["status"] == "CANCELED"
    assert "end_time" not in metadata["stats"]


def test_cancel_of_an_ended_workflow_marks_it_canceled(workflow, workflow_id):
    assert workflow.run(add.bind(1, 2), workflow_id=workflow_id) == 3
    workflow.cancel(workflow_id)
    assert workflow.get_status(workflow_id) == api.CANCELED


# ------------------------------------------------------------- argument checks


def test_arguments_that_do_not_fit_raise_type_error_before_anything_is_stored(
    workflow, workflow_id
):
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        workflow.run(add.bind(1), workflow_id=workflow_id)
    with pytest.raises(TypeError, match="too many positional arguments"):
        workflow.run(add.bind(1, 2, 3), workflow_id=workflow_id)
    with pytest.raises(api.WorkflowNotFoundError):
        workflow.get_status(workflow_id)


@pytest.mark.parametrize("call", ["get_status", "cancel", "get_output", "resume"])
def test_a_workflow_id_that_is_not_a_string_is_a_type_error(workflow, call):
    with pytest.raises(TypeError, match="workflow_id has to be a string type"):
        getattr(workflow, call)(42)


def test_init_takes_no_database_that_is_not_a_string(workflow):
    with pytest.raises(TypeError, match="database_url must be a string"):
        api.init(42)  # type: ignore[arg-type]


# -------------------------------------------------------------- reading outputs


@ray.remote
def gate(path: str) -> str:
    import os

    while not os.path.exists(path):
        time.sleep(0.05)
    return "opened"


@ray.remote
def after(value: str) -> str:
    return f"after {value}"


def test_the_output_of_a_task_not_yet_run_is_waited_for(workflow, workflow_id, tmp_path):
    release = tmp_path / "release"
    workflow.run_async(after.bind(gate.bind(str(release))), workflow_id=workflow_id)
    pending = workflow.get_output_async(workflow_id, task_id=f"{__name__}.after")
    ready, _ = ray.wait([pending], timeout=1)
    assert not ready

    release.touch()
    assert ray.get(pending, timeout=60) == "after opened"


def test_an_unknown_output_raises_value_error_when_read_not_when_asked(workflow, workflow_id):
    ref = workflow.get_output_async(f"{workflow_id}-missing")
    with pytest.raises(ValueError, match=f"No such workflow '{workflow_id}-missing'"):
        ray.get(ref)
