"""Fault: PostgreSQL restarts mid-run. Writes retry with backoff; nothing runs twice."""

from __future__ import annotations

import pytest
import ray

from tests.postgres import restart_postgres
from tests.waiting import count, eventually, mark

pytestmark = pytest.mark.slow


@ray.remote
def step(marks: str, name: str, *upstream: int) -> int:
    import time

    mark(marks, name)
    time.sleep(0.7)
    return 1 + sum(upstream)


@pytest.mark.exclusive
def test_postgres_restart_mid_run(ray_address, postgresql_url, blob_root, marks, workflow_id):
    from executor import workflow

    workflow.init(postgresql_url, storage=str(blob_root))
    node = step.bind(str(marks), "s0")
    for i in range(1, 8):
        node = step.bind(str(marks), f"s{i}", node)
    ref = workflow.run_async(node, workflow_id=workflow_id)

    eventually(lambda: count(marks, "s2"), timeout=60, what="the workflow to get going")
    restart_postgres()

    assert ray.get(ref, timeout=180) == 8
    assert workflow.get_status(workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    runs = {p.name: count(marks, p.name) for p in marks.iterdir()}
    assert runs == {f"s{i}": 1 for i in range(8)}, runs
