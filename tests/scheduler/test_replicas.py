"""Two ``gnomon up`` replicas on one PostgreSQL database and one Ray cluster.

Each replica has its own workflow manager (a different blob store gives it another
manager actor), so they compete for real: both fire every tick, and both try to recover
the same orphaned workflow. Each tick must run once, and the orphan must be finished by
exactly one of them.
"""

from __future__ import annotations

import itertools
import textwrap
import uuid
from datetime import timedelta

import pytest

from executor import workflow as api
from executor.status import WorkflowStatus
from scheduler.registry import parse_logical_date
from tests.scheduler.processes import GnomonUp, free_port
from tests.scheduler.test_recovery import orphan_workflow
from tests.waiting import count, eventually, python_path

pytestmark = pytest.mark.slow

START_SECONDS = 120

DAGS = """
import ray

import scheduler
from tests.waiting import mark


@ray.remote
def note(logical, marks):
    mark(marks, "tick-" + logical)
    return logical


# catchup: a replica held up past a tick (a loaded machine) still fires it when it
# catches up, so every tick runs, where catchup=False would coalesce it away by design.
@scheduler.register(name={name!r}, interval=1, max_active_runs=50, catchup=True)
def replicated(run):
    return note.bind(run.logical_date.strftime("%Y-%m-%dT%H:%M:%SZ"), {marks!r})
"""


def test_two_replicas_fire_each_tick_once_and_recover_an_orphan_once(
    ray_address, postgresql_url, blob_root, tmp_path, marks
):
    two_replicas(ray_address, postgresql_url, blob_root, tmp_path, marks)


def two_replicas(ray_address, postgresql_url, blob_root, tmp_path, marks, env=None) -> None:
    """Two replicas joined to ``ray_address`` (this session's Ray, or the deploy tests'
    two-node cluster, with its ``env``) fire each tick once and finish an orphan once."""
    workflow_id = f"orphan-{uuid.uuid4().hex[:8]}"
    api.init(postgresql_url, storage=str(blob_root))
    store = api._ensure()[1]
    go = orphan_workflow(api, workflow_id, postgresql_url, blob_root, tmp_path, marks)
    go.touch()

    name = f"replicated_{uuid.uuid4().hex[:8]}"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "replicated.py").write_text(textwrap.dedent(DAGS.format(name=name, marks=str(marks))))
    replica_env = {**(env or {}), "PYTHONPATH": python_path()}  # dags import tests.waiting
    replicas = []
    try:
        for index in range(2):
            args = [
                "--dags",
                str(dags),
                "--database-url",
                postgresql_url,
                "--storage",
                str(tmp_path / f"blobs-{index}"),
                "--port",
                str(free_port()),
                "--ray-address",
                ray_address,
            ]
            replicas.append(GnomonUp(args, tmp_path / f"replica-{index}.log", env=replica_env))
        for replica in replicas:
            replica.wait_for("Press Ctrl-C to stop.", START_SECONDS)

        eventually(
            lambda: (
                len(
                    [
                        r
                        for r in store.list_workflows(name=name)
                        if r.status == WorkflowStatus.SUCCESSFUL
                    ]
                )
                >= 6
            ),
            timeout=60,
            what="six ticks",
        )
        eventually(
            lambda: store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL,
            timeout=60,
            what="the orphan to be recovered",
        )
        for replica in replicas:
            assert replica.terminate(timeout=60) == 0, replica.text()[-2000:]
    finally:
        for replica in replicas:
            replica.close()

    ticks = sorted(
        parse_logical_date(r.workflow_id.split("@", 1)[1]) for r in store.list_workflows(name=name)
    )
    for tick in ticks:
        assert count(marks, "tick-" + tick.strftime("%Y-%m-%dT%H:%M:%SZ")) <= 1
    finished = [t for t in ticks if count(marks, "tick-" + t.strftime("%Y-%m-%dT%H:%M:%SZ"))]
    assert len(finished) >= 6
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), ticks
    assert api.get_output(workflow_id) == "first+blocked+last"
    assert count(marks, "first") == 1
    assert count(marks, "last") == 1  # run by the one replica whose lease won
