"""A deployment across simulated hosts, set up only the way the README tells a user.

A head and two workers (``deploy/ray-head.sh``, ``deploy/ray-worker.sh``) and ``gnomon up``
(``deploy/gnomon.sh``) each run on a host of their own (``tests/deploy/hosts.py``): own
home, own temp dir, own working directory, own PID namespace, and an environment holding
only the database URL, the head's address and the cluster's token. The dags folder exists
on the gnomon host alone. On PostgreSQL:

- scheduled runs, a resume, an event and a cancel work, and tasks run on the workers only;
- the CLI works on the gnomon host, and says in one line why it cannot from a host that
  runs no node;
- a worker host killed mid-task loses nothing: the run finishes, each task ran at most
  once more than its lost attempt;
- SIGTERM stops ``gnomon up`` within 15 s with runs in flight; they go on on the cluster,
  and a restarted ``gnomon up`` (timed from boot to healthy) carries on.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from executor.status import WorkflowStatus
from executor.store import SqlStore
from tests.deploy.hosts import Cluster, GnomonHost
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: What the issue allows a stop of ``gnomon up`` under load.
STOP_SECONDS = 15

DAGS = """
import os
import time
import uuid

import ray

import scheduler
from executor import workflow

MARKS = {marks!r}


def mark(run, task):
    # One file per execution, holding the HOME of the host that ran it.
    with open(os.path.join(MARKS, f"{{run}}.{{task}}.{{uuid.uuid4().hex}}"), "x") as handle:
        handle.write(os.environ["HOME"])


@ray.remote
def step(run, task, seconds, *upstream):
    mark(run, task)
    time.sleep(seconds)
    return 1 + sum(upstream)


@ray.remote
def hold(run):
    mark(run, "hold")
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(MARKS, "release")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return "released"


@ray.remote
def fragile(run, upstream):
    mark(run, "fragile")
    if not os.path.exists(os.path.join(MARKS, "fixed")):
        raise RuntimeError("not fixed yet")
    return upstream + 1


@ray.remote
def decide(decision):
    return decision[1]["answer"]


@scheduler.register(name="tick", interval=2, max_active_runs=3)
def tick(run):
    key = run.logical_date.strftime("%H%M%S")
    return step.bind(key, "b", 0.1, step.bind(key, "a", 0.1))


@scheduler.register(name="fanout")
def fanout(run):
    key = run.params["key"]
    parts = [step.bind(key, f"part{{i}}", 4.0) for i in range(4)]
    return step.bind(key, "combine", 0.1, *parts)


@scheduler.register(name="flaky")
def flaky(run):
    return fragile.bind("flaky", step.bind("flaky", "first", 0.1))


@scheduler.register(name="held")
def held(run):
    return hold.bind("held")


@scheduler.register(name="approval")
def approval(run):
    return decide.bind(workflow.wait_for_event(workflow.HTTPListener, event_key="approve"))
"""


def _executions(marks: Path, run: str) -> Counter[str]:
    """task -> how many times it started, for one run key."""
    return Counter(p.name.split(".")[1] for p in marks.iterdir() if p.name.startswith(f"{run}."))


def _hosts(marks: Path) -> set[str]:
    """The homes of the hosts that ran any task."""
    return {p.read_text() for p in marks.iterdir() if p.name.count(".") == 2}


def test_a_deployment_across_hosts(
    cluster: Cluster, scratch_postgresql_url: str, tmp_path: Path, marks: Path
) -> None:
    store = SqlStore.create(scratch_postgresql_url)
    gnomon = GnomonHost.create(
        cluster,
        f"gnomon-{uuid.uuid4().hex[:6]}",
        scratch_postgresql_url,
        DAGS.format(marks=str(marks)),
        GNOMON_STORAGE=str(tmp_path / "blobs"),  # the shared blob volume
        GNOMON_RECOVERY_INTERVAL="2",
    )
    lonely = cluster.host(
        "laptop", RAY_ADDRESS=cluster.address, GNOMON_DATABASE_URL=scratch_postgresql_url
    )
    figures: dict[str, Any] = {}

    def status(workflow_id: str) -> WorkflowStatus:
        return store.get_workflow(workflow_id).status

    def trigger(name: str, **params: Any) -> str:
        return gnomon.api(f"/api/v1/schedules/{name}/trigger", "POST", {"params": params})[
            "workflow_id"
        ]

    try:
        # Given gnomon up on a host of its own, joined with the token alone
        figures["first start to healthy (s)"] = round(gnomon.start(), 1)
        worker_homes = {str(w.home) for w in cluster.workers}

        # Then scheduled runs run, on the workers only
        eventually(
            lambda: (
                sum(
                    r.status == WorkflowStatus.SUCCESSFUL for r in store.list_workflows(name="tick")
                )
                >= 2
            ),
            timeout=90,
            what="two scheduled ticks",
        )

        # An event, sent through the REST API, reaches the run waiting for it
        approval = trigger("approval")
        gnomon.api(f"/api/v1/workflows/{approval}/events/approve", "POST", {"answer": "yes"})
        eventually(
            lambda: status(approval) == WorkflowStatus.SUCCESSFUL, timeout=60, what="approval"
        )
        assert store.get_workflow(approval).output_preview == "'yes'"

        # A resume: a run that failed finishes once fixed, its first task not run again
        flaky = trigger("flaky")
        eventually(lambda: status(flaky) == WorkflowStatus.FAILED, timeout=60, what="failure")
        (marks / "fixed").touch()
        gnomon.api(f"/api/v1/workflows/{flaky}/resume", "POST")
        eventually(lambda: status(flaky) == WorkflowStatus.SUCCESSFUL, timeout=60, what="resume")
        assert _executions(marks, "flaky") == {"first": 1, "fragile": 2}

        # A cancel, from the CLI on the gnomon host (it joins the cluster with the token)
        held = trigger("held")
        eventually(lambda: _executions(marks, "held"), timeout=60, what="the held task")
        cancelled = gnomon.host.run(["gnomon", "cancel", held])
        assert cancelled.returncode == 0, cancelled.stderr[-2000:]
        eventually(lambda: status(held) == WorkflowStatus.CANCELED, timeout=30, what="cancel")
        (marks / "release").touch()

        # The same command from a host with no node of the cluster: one line, no hang
        lonely.start(["sleep", "600"], "sleep.log")
        refused = lonely.run(["gnomon", "cancel", held], timeout=60)
        assert refused.returncode == 1
        last = refused.stderr.strip().splitlines()[-1]
        assert "Traceback" not in refused.stderr, refused.stderr
        assert last.startswith("Error: "), last
        assert "none of its nodes runs on this host" in last, last
        assert cluster.address in last

        # When a worker host dies mid-task
        lost = trigger("fanout", key="lost")
        eventually(
            lambda: (
                {p.read_text() for p in marks.iterdir() if p.name.startswith("lost.part")}
                == worker_homes
            ),
            timeout=60,
            what="parts running on both workers",
        )
        victim = cluster.workers.pop(0)
        victim.stop()

        # Then the run still finishes on the other worker, and nothing ran twice that had
        # finished
        eventually(lambda: status(lost) == WorkflowStatus.SUCCESSFUL, timeout=120, what="lost")
        assert store.get_workflow(lost).output_preview == "5"
        runs = _executions(marks, "lost")
        assert set(runs) == {"part0", "part1", "part2", "part3", "combine"}
        assert runs["combine"] == 1, runs
        assert all(n <= 2 for n in runs.values()), runs
        assert _hosts(marks) <= worker_homes, "a task ran off the worker hosts"
        cluster.add_worker(f"worker-{uuid.uuid4().hex[:4]}")  # the cluster is whole again

        # When gnomon up gets SIGTERM with a run in flight
        flight = trigger("fanout", key="flight")
        eventually(lambda: _executions(marks, "flight"), timeout=60, what="the run to start")
        stopping = time.monotonic()
        gnomon.process.signal(signal.SIGTERM)
        code = gnomon.process.popen.wait(timeout=60)
        figures["stop under load (s)"] = round(time.monotonic() - stopping, 1)
        assert code == 0, gnomon.process.text()[-3000:]
        assert figures["stop under load (s)"] <= STOP_SECONDS, figures

        # Then the run goes on on the cluster, and a restart joins the cluster again
        figures["restart to healthy (s)"] = round(gnomon.start("restart.log"), 1)
        eventually(lambda: status(flight) == WorkflowStatus.SUCCESSFUL, timeout=120, what="run")
        assert _executions(marks, "flight") == {f"part{i}": 1 for i in range(4)} | {"combine": 1}
        ticks = len(store.list_workflows(name="tick"))
        eventually(
            lambda: len(store.list_workflows(name="tick")) >= ticks + 2,
            timeout=60,
            what="ticks after the restart",
        )
        print(f"\nmulti-host deployment: {figures}")
    finally:
        (marks / "release").touch()
        gnomon.host.stop()
        lonely.stop()
        store.dispose()
