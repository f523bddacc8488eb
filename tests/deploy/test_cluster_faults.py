"""Faults 3 and 5 of issue 6 on the cluster from the deploy scripts (a head and two
worker hosts, ``tests/deploy/hosts.py``), with PostgreSQL: a database restart mid-run, and
an unwritable blob store.

The workflows are driven by a separate driver process joined to the cluster, as a user's
script would be; tasks leave side-effect files so a second run of a checkpointed task
shows. Fault 4, two ``gnomon up`` on one database, runs the replica test's scenario on
this cluster. (Faults 1 and 2 are in test_multihost.py and test_gnomon_killed.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.deploy.hosts import Cluster
from tests.postgres import restart_postgres
from tests.scheduler.test_replicas import two_replicas

pytestmark = pytest.mark.slow

CHAIN = """
    import json, os, socket, sys, time, ray
    from executor import workflow
    database_url, storage, marks, workflow_id = sys.argv[1:5]
    workflow.init(database_url, storage=storage)

    # SPREAD: a chain would otherwise follow its data and stay on one node.
    @ray.remote(max_retries=3, scheduling_strategy="SPREAD")
    def step(name, *upstream):
        with open(os.path.join(marks, name), "a") as handle:
            handle.write(ray.get_runtime_context().get_node_id() + "\\n")
        time.sleep(0.7)
        return 1 + sum(upstream)

    node = step.bind("s0")
    for i in range(1, 8):
        node = step.bind(f"s{i}", node)
    print(json.dumps(workflow.run(node, workflow_id=workflow_id)))
"""

BLOBS = """
    import json, os, sys, ray
    from executor import workflow
    database_url, storage, marks, workflow_id, action = sys.argv[1:6]
    workflow.init(database_url, storage=storage)

    @ray.remote
    def small():
        with open(os.path.join(marks, "small"), "a") as handle:
            handle.write("ran\\n")
        return 1

    @ray.remote
    def large(n):
        return b"x" * (2 << 20) + bytes([n])

    @ray.remote
    def size(blob):
        return len(blob)

    if action == "run":
        try:
            workflow.run(size.bind(large.bind(small.bind())), workflow_id=workflow_id)
            print(json.dumps({"failed": None}))
        except workflow.WorkflowExecutionError as error:
            status = workflow.get_status(workflow_id).value
            print(json.dumps({"failed": str(error), "status": status}))
    else:
        print(json.dumps({"output": workflow.resume(workflow_id)}))
"""


def _driver(code: str, cluster: Cluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=cluster.driver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen, timeout: float = 240):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.exclusive
def test_postgres_restart_mid_run_on_the_cluster(
    cluster: Cluster, scratch_postgresql_url, tmp_path: Path
):
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = _driver(
        CHAIN, cluster, scratch_postgresql_url, str(tmp_path / "blobs"), str(marks), "pg-restart"
    )
    try:
        deadline = time.monotonic() + 120
        while not (marks / "s2").exists():
            assert driver.poll() is None, driver.stderr.read()[-3000:] if driver.stderr else ""
            assert time.monotonic() < deadline, "the workflow never got going"
            time.sleep(0.1)
        restart_postgres()
        assert _result(driver) == 8
    finally:
        if driver.poll() is None:
            driver.kill()
    runs = {p.name: p.read_text().splitlines() for p in marks.iterdir()}
    assert {name: len(nodes) for name, nodes in runs.items()} == {f"s{i}": 1 for i in range(8)}
    # The chain ran on both workers: both wrote their checkpoints through the restart.
    assert len({nodes[0] for nodes in runs.values()}) == 2, runs


def test_unwritable_blob_store_on_the_cluster(
    cluster: Cluster, scratch_postgresql_url, tmp_path: Path
):
    marks = tmp_path / "marks"
    marks.mkdir()
    # A file where the store's directory should be (the suite runs as root, so
    # permissions would not stop a write).
    blocker = tmp_path / "blocked"
    blocker.write_text("not a directory")
    args = (scratch_postgresql_url, str(blocker / "blobs"), str(marks), "blobs-fault")

    failed = _result(_driver(BLOBS, cluster, *args, "run"))
    assert failed["failed"] is not None, failed
    assert "is not writable" in failed["failed"], failed
    assert str(blocker) in failed["failed"]
    assert failed["status"] == "FAILED"

    blocker.unlink()
    blocker.mkdir()
    assert _result(_driver(BLOBS, cluster, *args, "resume")) == {"output": (2 << 20) + 1}
    assert (marks / "small").read_text() == "ran\n"  # checkpointed: not run again


def test_two_gnomon_up_on_one_database_on_the_cluster(
    cluster: Cluster, ray_address, scratch_postgresql_url, blob_root, tmp_path: Path, marks
):
    # The orphan is made on this session's Ray (its manager killed); the replicas join
    # the two-node cluster, so one of them resumes it on a cluster that never saw it.
    two_replicas(
        cluster.address,
        scratch_postgresql_url,
        blob_root,
        tmp_path,
        marks,
        # The cluster's token; this process's own Ray set RAY_AUTH_MODE=token already.
        env={"RAY_AUTH_TOKEN": cluster.token},
    )
