"""Retries as Ray Workflows counted them: one ``max_retries`` budget per task, used up by
the attempts its workers died in and by those that raised, in a chain of tasks too."""

from __future__ import annotations

import os
import signal

import pytest
import ray

from executor import workflow as api
from tests.waiting import count, mark


@ray.remote(max_retries=2, retry_exceptions=True)
def crash_then_raise(marks: str, crashes: int, raises: int) -> int:
    attempt = mark(marks, "attempt")
    if attempt <= crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    if attempt <= crashes + raises:
        raise ConnectionError(f"attempt {attempt} failed")
    return attempt


def test_worker_deaths_and_errors_share_one_budget(workflow, workflow_id, marks):
    """Two deaths, then an error: with max_retries=2 that third attempt was the last."""
    with pytest.raises(api.WorkflowExecutionError) as caught:
        workflow.run(crash_then_raise.bind(str(marks), 2, 5), workflow_id=workflow_id)

    assert isinstance(caught.value.__cause__, ConnectionError)
    assert count(marks, "attempt") == 3
    task = workflow.get_metadata(workflow_id, f"{__name__}.crash_then_raise")
    assert task["status"] == "FAILED"


def test_worker_deaths_past_the_budget_fail_the_task(workflow, workflow_id, marks):
    with pytest.raises(api.WorkflowExecutionError, match="its worker died 3 time"):
        workflow.run(crash_then_raise.bind(str(marks), 5, 0), workflow_id=workflow_id)

    assert count(marks, "attempt") == 3
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.FAILED


@ray.remote(max_retries=1)
def dies_once(marks: str, name: str, x: int) -> int:
    if mark(marks, name) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def test_each_task_of_a_chain_has_its_own_budget(workflow, workflow_id, marks):
    """Two tasks that run in one Ray call (a linear chain), each allowed one retry, each
    losing its worker once: both succeed, where one budget for the call would not."""
    m = str(marks)
    dag = dies_once.bind(m, "second", dies_once.bind(m, "first", 1))

    assert workflow.run(dag, workflow_id=workflow_id) == 3
    assert (count(marks, "first"), count(marks, "second")) == (2, 2)
