"""Fault: ``gnomon up`` is SIGKILLed mid-run on the cluster, then started again.

The cluster (head and two workers) and ``gnomon up`` are started by the deploy scripts,
each on a simulated host of its own (``tests/deploy/hosts.py``), on a fresh PostgreSQL
database; the kill takes gnomon's whole host down. ``gnomon up`` is only a driver here:
the workflow manager is a detached actor on the head node, and it submitted the tasks,
so it owns them. Ray kills the tasks and actors a dead driver owns, but not a detached
actor nor the workers leased under it: the runs in flight keep going while ``gnomon up``
is down and finish on their own, each task once. The restarted scheduler must not run
anything again, must not fire a tick twice, and must follow ``catchup=False`` for the
ticks missed while it was down.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from executor.status import ACTIVE, WorkflowStatus
from executor.store import SqlStore
from scheduler.registry import parse_logical_date
from tests.deploy.hosts import Cluster, GnomonHost
from tests.waiting import eventually

pytestmark = pytest.mark.slow

#: Bound of a ``gnomon up`` start joining the cluster (imports, migrations, Ray, dags).
START_SECONDS = 120
#: The ticking schedule's interval, and how long ``gnomon up`` stays dead.
INTERVAL = 2
DOWNTIME = 7.0

DAGS = """
import os
import time
import uuid

import ray

import scheduler

MARKS = {marks!r}


@ray.remote(num_cpus=0.5)
def step(run, task, seconds, *upstream):
    # One new file per execution: a second run of a task leaves a second file.
    open(os.path.join(MARKS, f"{{run}}.{{task}}.{{uuid.uuid4().hex}}"), "x").close()
    time.sleep(seconds)
    return 1 + sum(upstream)


@scheduler.register(name={tick!r}, interval={interval}, max_active_runs=20)
def tick(run):
    key = run.logical_date.strftime("%Y%m%dT%H%M%S")
    return step.bind(key, "b", 1.0, step.bind(key, "a", 1.0))


@scheduler.register(name={batch!r})
def batch(run):
    extract = step.bind("batch", "extract", 1.5)
    parts = [step.bind("batch", f"part{{i}}", 2.5, extract) for i in range(3)]
    return step.bind("batch", "load", 1.5, step.bind("batch", "combine", 1.5, *parts))
"""


def _executions(marks: Path) -> Counter[tuple[str, str]]:
    """(run key, task) -> how many times it started."""
    return Counter(tuple(path.name.split(".")[:2]) for path in marks.iterdir())  # type: ignore[misc]


def _scheduler_started_at(log_text: str) -> float:
    """When the service began firing, from its log line (the process logs in UTC)."""
    found = re.search(r"^(\S+ \S+) INFO scheduler.service: Scheduler started", log_text, re.M)
    assert found, log_text[-3000:]
    moment = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return moment.replace(tzinfo=timezone.utc).timestamp()


def test_gnomon_up_killed_mid_run_on_the_cluster(
    cluster: Cluster, scratch_postgresql_url: str, tmp_path: Path, marks: Path
) -> None:
    # Given gnomon up (deploy/gnomon.sh) on the cluster with a ticking and a slow schedule
    suffix = uuid.uuid4().hex[:8]
    tick, batch = f"tick_{suffix}", f"batch_{suffix}"
    gnomon = GnomonHost.create(
        cluster,
        f"gnomon-{suffix}",
        scratch_postgresql_url,
        DAGS.format(marks=str(marks), tick=tick, batch=batch, interval=INTERVAL),
        GNOMON_STORAGE=str(tmp_path / "blobs"),
        GNOMON_RECOVERY_INTERVAL="2",
        TZ="UTC",
    )
    store = SqlStore.create(scratch_postgresql_url)

    def runs(name: str) -> list[Any]:
        return store.list_workflows(name=name)

    def finished(name: str) -> int:
        return sum(r.status == WorkflowStatus.SUCCESSFUL for r in runs(name))

    try:
        gnomon.start("first.log", START_SECONDS)
        eventually(lambda: finished(tick) >= 2, timeout=60, what="two ticks")
        batch_id = gnomon.api(f"/api/v1/schedules/{batch}/trigger", "POST", {})["workflow_id"]

        # When gnomon up is SIGKILLed while the batch and ticks are mid-run
        eventually(
            lambda: any(key == ("batch", "part0") for key in _executions(marks)),
            timeout=60,
            what="the batch's fan-out to start",
        )
        in_flight = [r.workflow_id for r in runs(tick) + runs(batch) if r.status in ACTIVE]
        killed_at = time.time()
        # Its whole host: gnomon up and the Ray node it runs on.
        gnomon.host.stop()
        assert gnomon.process.popen.returncode != 0
        assert batch_id in in_flight

        # Then the runs in flight go on without it: the detached manager owns their tasks
        # and their leases, so they neither die with the driver nor read RESUMABLE
        assert store.get_workflow(batch_id).status == WorkflowStatus.RUNNING
        for workflow_id in in_flight:
            eventually(
                lambda workflow_id=workflow_id: (
                    store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL
                ),
                timeout=60,
                what=f"{workflow_id} to finish while gnomon up is down",
            )
        time.sleep(max(0.0, killed_at + DOWNTIME - time.time()))

        # When it is started again on the same database and cluster
        restarted_at = time.time()
        gnomon.start("second.log", START_SECONDS)
        scheduler_started = _scheduler_started_at(gnomon.process.text())

        # Then the ticks go on
        eventually(
            lambda: (
                sum(
                    r.status == WorkflowStatus.SUCCESSFUL and r.created_at > restarted_at
                    for r in runs(tick)
                )
                >= 2
            ),
            timeout=60,
            what="two ticks after the restart",
        )
        listed = gnomon.api(f"/api/v1/workflows?name={tick}&limit=500")["workflows"]
        gnomon.process.signal(signal.SIGTERM)
        assert gnomon.process.popen.wait(timeout=60) == 0, gnomon.process.text()[-3000:]
    finally:
        gnomon.host.stop()

    try:
        # Runs started before the stop finish on the cluster without gnomon up.
        eventually(
            lambda: not [r for r in runs(tick) + runs(batch) if r.status in ACTIVE],
            timeout=60,
            what="every run to finish",
        )
        ticks = runs(tick)
        assert {r.status for r in ticks + runs(batch)} == {WorkflowStatus.SUCCESSFUL}
        executions = _executions(marks)

        # No task ran twice: the batch's tasks before, during and after the kill
        batch_tasks = {task: n for (run, task), n in executions.items() if run == "batch"}
        assert batch_tasks == {
            "extract": 1,
            "part0": 1,
            "part1": 1,
            "part2": 1,
            "combine": 1,
            "load": 1,
        }, batch_tasks
        assert store.get_workflow(batch_id).output_preview == "8"  # 1 + (1 + 3 * 2)

        # No tick ran twice: one run per logical date, and one execution of each task
        ids = [r.workflow_id for r in ticks]
        assert len(ids) == len(set(ids))
        assert {item["id"] for item in listed} <= set(ids)
        assert len(listed) == len({item["id"] for item in listed})
        dates = {r.workflow_id: parse_logical_date(r.workflow_id.split("@", 1)[1]) for r in ticks}
        keys = {moment.strftime("%Y%m%dT%H%M%S") for moment in dates.values()}
        tick_runs = {key: n for key, n in executions.items() if key[0] != "batch"}
        assert set(tick_runs) == {(key, task) for key in keys for task in ("a", "b")}
        assert set(tick_runs.values()) == {1}, tick_runs

        # The missed ticks follow catchup=False: only the latest one ran, at the restart
        created = {r.workflow_id: r.created_at for r in ticks}
        assert not [w for w, at in created.items() if killed_at < at < restarted_at]
        before = max(dates[w] for w, at in created.items() if at <= killed_at)
        after = sorted(dates[w] for w, at in created.items() if at >= restarted_at)
        step = timedelta(seconds=INTERVAL)
        skipped = round((after[0] - before) / step) - 1
        assert skipped >= 2, (before, after)  # catchup=True would have run every one
        assert after[0].timestamp() <= scheduler_started + 0.5, (
            "the first run after the restart is the latest tick missed while down",
            after[0],
            scheduler_started,
        )
    finally:
        store.dispose()
