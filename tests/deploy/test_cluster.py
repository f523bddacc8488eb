"""A real two-node Ray cluster started with the deploy scripts, on PostgreSQL.

The head and the worker each run the same script docker-compose would (``deploy/``;
see ``tests/deploy/cluster.py``). Workflows are driven by a subprocess joined through
RAY_ADDRESS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.deploy.cluster import drive, env

pytestmark = pytest.mark.slow


WORKFLOW = """
    import os, sys, time, ray
    from executor import workflow
    database_url, storage, marks, workflow_id, seconds = sys.argv[1:6]
    workflow.init(database_url, storage=storage)

    @ray.remote(max_retries=3)
    def work(i, *upstream):
        with open(os.path.join(marks, f"task-{i}"), "a") as handle:
            handle.write(ray.get_runtime_context().get_node_id() + "\\n")
        time.sleep(float(seconds))
        return i + sum(upstream)

    layer = [work.bind(i) for i in range(4)]
    result = workflow.run(work.bind(100, *layer), workflow_id=workflow_id)
    print(result)
"""


def test_tasks_run_on_both_nodes(cluster, postgresql_url, tmp_path, workflow_id):
    marks = tmp_path / "marks"
    marks.mkdir()
    output = drive(
        WORKFLOW,
        cluster.address,
        postgresql_url,
        str(tmp_path / "blobs"),
        str(marks),
        workflow_id,
        "1.0",
    )
    assert output.strip().splitlines()[-1] == str(100 + 0 + 1 + 2 + 3)
    nodes = {line for path in marks.iterdir() for line in path.read_text().split()}
    assert len(nodes) == 2, "the fan-out should use the head and the worker node"


def test_worker_node_killed_mid_workflow(cluster, postgresql_url, tmp_path, workflow_id):
    # Given a workflow whose tasks are spread over both nodes
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(WORKFLOW),
            postgresql_url,
            str(tmp_path / "blobs"),
            str(marks),
            workflow_id,
            "4.0",
        ],
        env=env(RAY_ADDRESS=cluster.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # When the worker node's raylet is SIGKILLed while tasks run there
    worker_raylets = [
        int(pid)
        for pid in subprocess.run(
            ["pgrep", "-g", str(cluster.worker.pid), "-f", "raylet"],
            capture_output=True,
            text=True,
        ).stdout.split()
    ]
    deadline = time.time() + 120
    while len(list(marks.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert worker_raylets, "the worker node has a raylet to kill"
    for pid in worker_raylets:
        os.kill(pid, signal.SIGKILL)
    out, err = driver.communicate(timeout=300)

    # Then the workflow still completes: Ray retried the lost tasks on the head
    assert driver.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == str(106)
    runs = {path.name: len(path.read_text().split()) for path in marks.iterdir()}
    assert set(runs) == {f"task-{i}" for i in (0, 1, 2, 3, 100)}
    assert all(count <= 2 for count in runs.values()), runs
    assert runs["task-100"] == 1  # started after the kill: ran once
