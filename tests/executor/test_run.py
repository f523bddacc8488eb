"""Running workflows: the Ray Workflows key-concepts examples, InputNode, ObjectRefs."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from ray.dag import InputNode

from tests.executor import scripts
from tests.waiting import count, mark


@ray.remote
def one() -> int:
    return 1


@ray.remote
def add(a: int, b: int) -> int:
    return a + b


def test_key_concepts_example(workflow, workflow_id):
    dag = add.bind(100, one.bind())

    assert workflow.run(dag, workflow_id=workflow_id) == 101
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    assert workflow.get_output(workflow_id) == 101
    assert ray.get(workflow.get_output_async(workflow_id)) == 101


def test_run_async_returns_a_ref(workflow):
    assert ray.get(workflow.run_async(add.bind(100, one.bind()))) == 101


def test_input_node_feeds_run_arguments(workflow):
    with InputNode() as inp:
        dag = add.bind(inp.x, inp.y)
    assert workflow.run(dag, x=2, y=40) == 42

    with InputNode() as inp:
        dag = add.bind(inp[0], inp[1])
    assert workflow.run(dag, 5, 6) == 11

    with InputNode() as inp:
        dag = add.bind(inp, 1)
    assert workflow.run(dag, 41) == 42


@ray.remote
def hello() -> str:
    return "hello"


@ray.remote
def words() -> list:
    return [hello.remote(), ray.put("world")]


@ray.remote
def concat(refs: list) -> str:
    return " ".join(ray.get(r) for r in refs)


def test_object_refs_returned_in_a_list(workflow, workflow_id):
    assert workflow.run(concat.bind(words.bind()), workflow_id=workflow_id) == "hello world"
    # The refs were checkpointed by value: the task's stored output reads back as refs.
    stored = workflow.get_output(workflow_id, task_id=f"{__name__}.words")
    assert [ray.get(r) for r in stored] == ["hello", "world"]


@ray.remote
def total(items: list) -> int:
    return sum(ray.get(items[0])) + items[1]


def test_object_ref_passed_in(workflow):
    ref = ray.put([1, 2, 3])
    assert workflow.run(total.bind([ref, 4])) == 10


@ray.remote
def big(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.uint8)


@ray.remote
def size(array: np.ndarray) -> int:
    return int(array.sum())


def test_large_intermediate_goes_to_blob_store(workflow, workflow_id, blob_root):
    n = 64 * 1024 * 1024
    assert workflow.run(size.bind(big.bind(n)), workflow_id=workflow_id) == n
    blobs = [p for p in blob_root.rglob("*") if p.is_file() and p.stat().st_size >= n]
    assert blobs, "a 64 MiB checkpoint should be a blob, not a database row"
    assert workflow.get_output(workflow_id, task_id=f"{__name__}.big").nbytes == n


@ray.remote
def fib(n: int):
    from executor import workflow

    if n <= 1:
        return n
    return workflow.continuation(add.bind(fib.bind(n - 1), fib.bind(n - 2)))


def test_recursive_continuation_fib_11(workflow, workflow_id, store):
    assert workflow.run(fib.bind(11), workflow_id=workflow_id) == 89
    tasks = store.load_tasks(workflow_id)
    assert len(tasks) == 430  # every call is recorded: 3 * fib(12) - 2 fib and add tasks
    assert all(t.status.value == "SUCCESSFUL" for t in tasks)


def test_run_an_existing_id_returns_the_stored_result(workflow, workflow_id, marks):
    @ray.remote
    def once(marks: str) -> int:
        mark(marks, "once")
        return 7

    assert workflow.run(once.bind(str(marks)), workflow_id=workflow_id) == 7
    assert workflow.run(once.bind(str(marks)), workflow_id=workflow_id) == 7
    assert count(marks, "once") == 1


def test_continuation_outside_a_workflow_just_runs(ray_address):
    from executor import workflow

    assert workflow.continuation(add.bind(1, 2)) == 3


@pytest.mark.parametrize("bad", [42, "dag", add])
def test_run_rejects_a_non_dag(workflow, bad):
    with pytest.raises(TypeError, match="Input should be a DAG"):
        workflow.run(bad)


RESTARTS_RAY = """
import sys
import ray
from executor import workflow

@ray.remote
def plus_one(x):
    return x + 1

ray.init(address="local", num_cpus=1, include_dashboard=False)
workflow.init(sys.argv[1], storage=sys.argv[2])
outputs = [workflow.run(plus_one.bind(1), workflow_id="before")]
ray.shutdown()
ray.init(address="local", num_cpus=1, include_dashboard=False)
outputs.append(workflow.run(plus_one.bind(2), workflow_id="after"))
outputs.append(workflow.get_output("before"))
print("OUTPUTS", outputs)
"""


@pytest.mark.slow
def test_a_process_that_starts_ray_anew_keeps_working(ray_address, tmp_path):
    """Handles on the first Ray's manager are dead after ``ray.shutdown()``: the next
    session's calls must not use them (Ray Workflows found its actor by name each time)."""
    process = scripts.start(
        RESTARTS_RAY, tmp_path, [f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "blobs")]
    )
    assert process.wait(timeout=180) == 0, (tmp_path / "script.log").read_text()[-2000:]
    assert "OUTPUTS [2, 3, 2]" in (tmp_path / "script.log").read_text()
