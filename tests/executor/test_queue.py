"""The workflow queue: ``workflow.init(max_running_workflows=, max_pending_workflows=)``.

Its limits live in the database, so each test here gets a database of its own.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from executor import workflow as api
from executor.config import StoreConfig, close, handles
from executor.manager import manager_for
from tests.waiting import eventually, mark


@pytest.fixture(params=["sqlite", "postgresql"])
def queue_db(request: pytest.FixtureRequest, tmp_path: Path, ray_address: str) -> Iterator[str]:
    """A database of this test's own (the queue's limits stay in it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        url = request.getfixturevalue("scratch_postgresql_url")
    yield url
    for storage in ("blobs", "a", "b"):
        close(StoreConfig.resolve(url, str(tmp_path / storage)))


@ray.remote
def hold(release: str, marks: str, x: int) -> int:
    """Runs until ``release`` exists; marks when it started."""
    mark(marks, f"started-{x}")
    while not os.path.exists(release):
        time.sleep(0.02)
    return x


def statuses(ids: list[str]) -> dict[str, str]:
    return {workflow_id: api.get_status(workflow_id).value for workflow_id in ids}


def test_limits_are_checked_as_ray_checked_them(queue_db, tmp_path):
    with pytest.raises(TypeError):
        api.init(1, 2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="'max_running_workflows' must be None or an integer"):
        api.init(queue_db, max_running_workflows=1.7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'max_pending_workflows' must be None or an integer"):
        api.init(queue_db, max_pending_workflows=1.7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a positive integer or use -1 as infinity"):
        api.init(queue_db, max_running_workflows=0)
    with pytest.raises(ValueError, match="a positive integer or use -1 as infinity"):
        api.init(queue_db, max_running_workflows=-2)
    with pytest.raises(ValueError, match="a non-negative integer or use -1 as infinity"):
        api.init(queue_db, max_pending_workflows=-2)


def test_limits_are_set_once_for_the_database(queue_db, tmp_path):
    storage = str(tmp_path / "blobs")
    api.init(queue_db, storage=storage, max_running_workflows=5, max_pending_workflows=6)
    api.init(queue_db, storage=storage, max_running_workflows=5, max_pending_workflows=6)
    with pytest.raises(ValueError, match="does not match the original ones"):
        api.init(queue_db, storage=storage, max_running_workflows=7, max_pending_workflows=8)
    api.init(queue_db, storage=storage)
    api.init(queue_db, storage=storage, max_running_workflows=None, max_pending_workflows=None)
    store = handles(StoreConfig.resolve(queue_db, storage)).store
    assert (store.queue_limits().max_running, store.queue_limits().max_pending) == (5, 6)


def test_past_the_running_limit_workflows_wait_and_past_the_pending_limit_submission_fails(
    queue_db, tmp_path, marks
):
    api.init(
        queue_db,
        storage=str(tmp_path / "blobs"),
        max_running_workflows=2,
        max_pending_workflows=2,
    )
    release = tmp_path / "release"
    ids = [f"q{i}" for i in range(5)]
    refs = [
        api.run_async(hold.bind(str(release), str(marks), i), workflow_id=ids[i]) for i in range(4)
    ]

    eventually(lambda: (marks / "started-0").exists() and (marks / "started-1").exists())
    assert sorted(w for w, _ in api.list_all({api.WorkflowStatus.RUNNING})) == ids[:2]
    assert sorted(w for w, _ in api.list_all(api.WorkflowStatus.PENDING)) == ids[2:4]
    with pytest.raises(queue.Full, match="Workflow queue has been full"):
        api.run(hold.bind(str(release), str(marks), 4), workflow_id=ids[4])
    with pytest.raises(api.WorkflowNotFoundError):
        api.get_status(ids[4])  # the refused one left nothing behind
    assert not (marks / "started-2").exists()

    release.touch()
    assert ray.get(refs) == [0, 1, 2, 3]
    assert api.run(hold.bind(str(release), str(marks), 4), workflow_id=ids[4]) == 4
    assert statuses(ids) == dict.fromkeys(ids, "SUCCESSFUL")


def test_queued_workflows_start_in_submission_order(queue_db, tmp_path, marks):
    api.init(queue_db, storage=str(tmp_path / "blobs"), max_running_workflows=1)
    release = tmp_path / "release"
    refs = [
        api.run_async(hold.bind(str(release), str(marks), i), workflow_id=f"order{i}")
        for i in range(4)
    ]
    eventually(lambda: (marks / "started-0").exists())
    release.touch()
    assert ray.get(refs) == [0, 1, 2, 3]
    starts = [(marks / f"started-{i}").stat().st_mtime_ns for i in range(4)]
    assert starts == sorted(starts)


def test_the_limit_holds_across_managers_on_one_database(queue_db, tmp_path, marks):
    """Two managers (two blob stores: two StoreConfigs) on one database share one queue."""
    release = tmp_path / "release"
    api.init(queue_db, storage=str(tmp_path / "a"), max_running_workflows=1)
    first = api.run_async(hold.bind(str(release), str(marks), 0), workflow_id="first")
    eventually(lambda: (marks / "started-0").exists())

    api.init(queue_db, storage=str(tmp_path / "b"))  # no limits given: the stored ones hold
    second = api.run_async(hold.bind(str(release), str(marks), 1), workflow_id="second")
    assert api.get_status("second") == api.WorkflowStatus.PENDING

    release.touch()
    assert ray.get([first, second]) == [0, 1]
    assert api.get_status("second") == api.WorkflowStatus.SUCCESSFUL


def test_after_its_manager_dies_resume_all_refills_the_slots_running_first(
    queue_db, tmp_path, marks
):
    """As after a cluster restart: another manager (another blob store, so another
    StoreConfig) resumes what the dead one ran and queued, running ones first."""
    first = str(tmp_path / "a")
    api.init(queue_db, storage=first, max_running_workflows=2, max_pending_workflows=2)
    release = tmp_path / "release"
    ids = [f"r{i}" for i in range(4)]
    for i in range(4):
        api.run_async(hold.bind(str(release), str(marks), i), workflow_id=ids[i])
    eventually(lambda: (marks / "started-0").exists() and (marks / "started-1").exists())

    ray.kill(manager_for(StoreConfig.resolve(queue_db, first)), no_restart=True)
    api.init(queue_db, storage=str(tmp_path / "b"))
    eventually(lambda: set(statuses(ids).values()) == {"RESUMABLE"}, what="all RESUMABLE")

    resumed = api.resume_all()
    assert [workflow_id for workflow_id, _ in resumed] == ids
    running = {w for w, _ in api.list_all(api.WorkflowStatus.RUNNING)}
    pending = {w for w, _ in api.list_all(api.WorkflowStatus.PENDING)}
    assert (running, pending) == (set(ids[:2]), set(ids[2:]))

    release.touch()
    assert ray.get([ref for _, ref in resumed]) == [0, 1, 2, 3]
