"""The store contract, the same on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time

import pytest

from executor.checkpoint import dumps, loads
from executor.errors import DatabaseError, InvalidTypeError, NoFreeSlotError
from executor.status import TaskStatus, WorkflowStatus
from executor.store import Checkpoint, NewTask, SqlStore, owner_id
from executor.store.leases import HOSTNAME


@pytest.fixture(autouse=True)
def _remove_contract_rows(store, workflow_id):
    """These rows have no runnable graph: remove them, so no recovery tries to run them."""
    yield
    for record in store.list_workflows(id_prefix=workflow_id):
        store.delete_workflow(record.workflow_id)


def _create(store: SqlStore, workflow_id: str, task_ids: list[str] | None = None) -> bool:
    task_ids = task_ids or ["t"]
    return store.create_workflow(
        workflow_id,
        "contract",
        b"graph",
        None,
        task_ids[-1],
        [NewTask(task_id=t, name=f"mod.{t}", upstream=[], user_metadata={}) for t in task_ids],
        {"k": "v"},
    )


def _checkpoint(value) -> Checkpoint:
    data = dumps(value)
    return Checkpoint(kind="value", data=data, blob=None, size=len(data))


def test_create_workflow_once(store, workflow_id):
    assert _create(store, workflow_id) is True
    assert _create(store, workflow_id, ["other"]) is False

    record = store.get_workflow(workflow_id)
    assert record.status == WorkflowStatus.PENDING
    assert record.user_metadata == {"k": "v"}
    assert [t.task_id for t in store.load_tasks(workflow_id)] == ["t"]
    assert store.load_graph(workflow_id) == (b"graph", None)


def test_max_active_holds_across_racing_creators(store, workflow_id):
    """Creators racing for two slots of one name (scheduler replicas, each with a stale
    count of the other's runs): exactly two runs are created, the rest are refused."""
    name, contenders, owner = workflow_id, 8, owner_id("slots")
    barrier = threading.Barrier(contenders)
    results: dict[str, object] = {}

    def create(run: str) -> bool:
        new = [NewTask(task_id="t", name="mod.t", upstream=[], user_metadata={})]
        return store.create_workflow(run, name, b"g", None, "t", new, {}, owner=owner, max_active=2)

    def contend(i: int) -> None:
        run = f"{workflow_id}@{i}"
        barrier.wait(timeout=10)
        try:
            results[run] = create(run)
        except NoFreeSlotError as refused:
            results[run] = refused

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    created = sorted(run for run, result in results.items() if result is True)
    refused = [r for r in results.values() if isinstance(r, NoFreeSlotError)]
    assert len(created) == 2, results
    assert len(refused) == contenders - 2, results
    assert "already has 2 active run(s)" in str(refused[0])
    assert sorted(r.workflow_id for r in store.list_workflows(name=name)) == created
    # A duplicate of a created run is a duplicate, not "full"
    assert create(created[0]) is False
    # ... and a finished run frees its slot
    store.finish(created[0], owner, WorkflowStatus.SUCCESSFUL)
    assert create(f"{workflow_id}@late") is True
    with pytest.raises(NoFreeSlotError):
        create(f"{workflow_id}@later")


def test_acquire_respects_a_live_lease(clocked, clock, workflow_id):
    store = clocked
    _create(store, workflow_id)
    first, second = owner_id("owner-a"), owner_id("owner-b")

    assert store.acquire(workflow_id, first, ttl=30) is True
    record = store.get_workflow(workflow_id)
    assert (record.owner, record.status) == (first, WorkflowStatus.RUNNING)

    clock.advance(29)
    assert store.acquire(workflow_id, second) is False
    assert store.get_workflow(workflow_id).owner == first

    # When the first owner stops renewing, its lease lapses and anyone may take over.
    clock.advance(2)
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RESUMABLE
    assert store.acquire(workflow_id, second) is True
    record = store.get_workflow(workflow_id)
    assert (record.owner, record.status) == (second, WorkflowStatus.RUNNING)
    assert store.acquire(workflow_id, first) is False


def test_renewed_lease_stays_live(clocked, clock, workflow_id):
    store = clocked
    _create(store, workflow_id)
    first = owner_id("owner-a")
    assert store.acquire(workflow_id, first, ttl=30)
    for _ in range(4):
        clock.advance(20)
        store.renew(first, [workflow_id], ttl=30)
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING
    assert store.acquire(workflow_id, owner_id("owner-b")) is False
    clock.advance(31)
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RESUMABLE


def test_an_owner_in_another_pid_namespace_is_trusted_until_its_lease_ends(store, workflow_id):
    """A container sharing this hostname but not its processes: pid 999999 there may be
    alive, whatever this namespace says."""
    elsewhere = f"{socket.gethostname()}~1/999999/x"
    _create(store, workflow_id)
    assert store.acquire(workflow_id, elsewhere, ttl=3600) is True

    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING
    assert store.acquire(workflow_id, owner_id("local")) is False


def test_a_dead_owner_reads_resumable_at_once(store, workflow_id):
    dead_pid = 999_999
    with pytest.raises(ProcessLookupError):
        os.kill(dead_pid, 0)
    dead = f"{HOSTNAME}/{dead_pid}/x"
    _create(store, workflow_id)

    assert store.acquire(workflow_id, dead, ttl=3600) is True

    record = store.get_workflow(workflow_id)
    assert record.lease_expires_at > time.time() + 3000  # the lease alone says "alive"
    assert record.status == WorkflowStatus.RESUMABLE
    listed = {r.workflow_id for r in store.list_workflows(statuses=[WorkflowStatus.RESUMABLE])}
    assert workflow_id in listed
    assert store.acquire(workflow_id, owner_id("heir")) is True


def test_an_owner_on_another_host_is_trusted_until_its_lease_ends(store, workflow_id):
    elsewhere = "some-other-host.invalid/1/x"
    _create(store, workflow_id)
    assert store.acquire(workflow_id, elsewhere, ttl=3600) is True

    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING
    assert store.acquire(workflow_id, owner_id("local")) is False


def test_acquire_is_a_compare_and_set(store, workflow_id):
    """Given many contenders racing for an unowned workflow, exactly one wins."""
    _create(store, workflow_id)
    contenders = 8
    barrier = threading.Barrier(contenders)
    results: dict[str, bool] = {}

    def contend(i: int) -> None:
        owner = owner_id(f"c{i}")
        barrier.wait(timeout=10)
        results[owner] = store.acquire(workflow_id, owner)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == contenders
    winners = [owner for owner, won in results.items() if won]
    assert len(winners) == 1
    record = store.get_workflow(workflow_id)
    assert (record.owner, record.status) == (winners[0], WorkflowStatus.RUNNING)


def test_finish_by_a_former_owner_is_ignored(clocked, clock, workflow_id):
    store = clocked
    _create(store, workflow_id)
    first, second = owner_id("a"), owner_id("b")
    assert store.acquire(workflow_id, first, ttl=10)
    clock.advance(11)
    assert store.acquire(workflow_id, second)

    assert store.finish(workflow_id, first, WorkflowStatus.FAILED, error="stale") is False
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING

    assert store.finish(workflow_id, second, WorkflowStatus.SUCCESSFUL, "42") is True
    record = store.get_workflow(workflow_id)
    assert (record.status, record.owner, record.output_preview) == (
        WorkflowStatus.SUCCESSFUL,
        None,
        "42",
    )
    assert record.started_at <= record.ended_at


def test_first_checkpoint_wins(store, workflow_id):
    _create(store, workflow_id)
    started = time.time()
    store.task_finished(workflow_id, "t", _checkpoint("first"), "'first'", started, 1)
    store.task_finished(workflow_id, "t", _checkpoint("second"), "'second'", started, 1)

    assert loads(store.load_checkpoint(workflow_id, "t").data) == "first"
    task = store.get_task(workflow_id, "t")
    assert task.status == TaskStatus.SUCCESSFUL
    assert task.output_task_id == "t"


def test_ignored_checkpoint_leaves_the_task_row_alone(store, workflow_id):
    _create(store, workflow_id)
    started = time.time()
    store.task_finished(workflow_id, "t", _checkpoint("first"), "'first'", started, 1)
    before = store.get_task(workflow_id, "t")
    store.task_finished(workflow_id, "t", _checkpoint("second"), "'second'", started, 1)

    after = store.get_task(workflow_id, "t")
    assert after.output_preview == "'first'"
    assert after.attempts == before.attempts
    assert after.ended_at == before.ended_at


@pytest.mark.parametrize("printed", [False, True], ids=["quiet", "with-log"])
def test_the_output_tasks_checkpoint_records_the_workflow_successful(store, workflow_id, printed):
    """In the checkpoint's own transaction, on both of a finish's paths (a task that
    printed something takes the general one)."""
    _create(store, workflow_id, ["a", "out"])
    assert store.acquire(workflow_id, owner_id("m"))
    started = time.time()
    log = (started, "printed\n") if printed else None
    assert (
        store.task_finished(workflow_id, "a", _checkpoint(1), "1", started, 1, log=log).outcome
        is False
    )
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING

    assert store.task_finished(workflow_id, "out", _checkpoint(2), "2", started, 1, log=log).outcome
    record = store.get_workflow(workflow_id)
    assert (record.status, record.owner, record.output_preview) == (
        WorkflowStatus.SUCCESSFUL,
        None,
        "2",
    )
    assert record.ended_at is not None
    assert record.lease_expires_at is None
    # A second finish of the output (a retried task) changes nothing, and says so.
    assert store.task_finished(workflow_id, "out", _checkpoint(3), "3", started, 1).outcome is False
    assert store.get_workflow(workflow_id).output_preview == "2"


@pytest.mark.parametrize("printed", [False, True], ids=["quiet", "with-log"])
def test_a_task_that_is_not_its_graphs_output_finishes_only_itself(store, workflow_id, printed):
    """``graph_output=False`` takes the lean finish: the checkpoint and the task's row,
    with no look at the workflow (so even the output's id would not complete it)."""
    _create(store, workflow_id, ["a", "out"])
    assert store.acquire(workflow_id, owner_id("m"))
    started = time.time()
    log = (started, "printed\n") if printed else None

    finished = store.task_finished(
        workflow_id, "out", _checkpoint(2), "2", started, 1, log=log, graph_output=False
    )

    assert finished.outcome is False
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING
    task = store.get_task(workflow_id, "out")
    assert (task.status, task.output_task_id, task.output_preview) == (
        TaskStatus.SUCCESSFUL,
        "out",
        "2",
    )
    assert store.load_checkpoint(workflow_id, "out") is not None


def test_a_continuations_last_task_records_the_workflow_it_completes(store, workflow_id):
    _create(store, workflow_id, ["out"])
    assert store.acquire(workflow_id, owner_id("m"))
    started = time.time()
    data = dumps("the continuation's graph")
    continuation = Checkpoint(kind="continuation", data=data, blob=None, size=len(data))
    inner = NewTask(task_id="out.x", name="mod.x", upstream=[], user_metadata={})
    status = store.task_continued(workflow_id, "out", started, 1, _built(continuation, [inner]))
    assert status == WorkflowStatus.RUNNING
    assert store.get_workflow(workflow_id).status == WorkflowStatus.RUNNING
    assert store.get_task(workflow_id, "out").status == TaskStatus.CONTINUED

    finish = store.task_finished(workflow_id, "out.x", _checkpoint(5), "5", started, 1, ("out",))
    assert finish.outcome is True
    record = store.get_workflow(workflow_id)
    assert (record.status, record.output_preview) == (WorkflowStatus.SUCCESSFUL, "5")
    assert store.get_task(workflow_id, "out").status == TaskStatus.SUCCESSFUL


def test_a_canceled_workflow_stays_canceled_when_its_output_finishes(store, workflow_id):
    _create(store, workflow_id)
    owner = owner_id("m")
    assert store.acquire(workflow_id, owner)
    assert store.finish(workflow_id, owner, WorkflowStatus.CANCELED)
    assert (
        store.task_finished(workflow_id, "t", _checkpoint(1), "1", time.time(), 1).outcome is False
    )
    assert store.get_workflow(workflow_id).status == WorkflowStatus.CANCELED


def test_list_workflows_keyset_pagination(store, workflow_id):
    created = [f"{workflow_id}-{i:02d}" for i in range(7)]
    for each in created:
        _create(store, each)
    newest_first = list(reversed(created))

    def pages(**filters) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = store.list_workflows(limit=3, before=cursor, id_prefix=workflow_id, **filters)
            assert len(page) <= 3
            seen += [r.workflow_id for r in page]
            if len(page) < 3:
                return seen
            cursor = (page[-1].created_at, page[-1].workflow_id)
        raise AssertionError("pagination did not end")

    assert pages() == newest_first
    assert pages(statuses=[WorkflowStatus.PENDING]) == newest_first
    assert pages(statuses=[WorkflowStatus.FAILED]) == []
    full = [r.workflow_id for r in store.list_workflows(id_prefix=workflow_id)]
    assert full == newest_first


def test_list_workflows_id_prefix_is_literal(store, workflow_id):
    _create(store, f"{workflow_id}_a")
    _create(store, f"{workflow_id}xa")
    listed = [r.workflow_id for r in store.list_workflows(id_prefix=f"{workflow_id}_")]
    assert listed == [f"{workflow_id}_a"]


def _finish_tasks(url: str, workflow_id: str, task_ids: list[str], start) -> None:
    """Runs in a spawned process: one writer among several."""
    store = SqlStore.create(url)
    start.wait(timeout=60)
    for task_id in task_ids:
        now = time.time()
        store.tasks_started(workflow_id, [(task_id, now)])
        store.task_finished(workflow_id, task_id, _checkpoint(task_id), repr(task_id), now, 0)
    store.dispose()


def test_concurrent_writers_in_separate_processes(store, database_url, workflow_id):
    writers, per_writer = 4, 100
    task_ids = [f"task-{i:03d}" for i in range(writers * per_writer)]
    _create(store, workflow_id, task_ids)

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [
        context.Process(
            target=_finish_tasks,
            args=(database_url, workflow_id, task_ids[i::writers], start),
        )
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
    codes = [process.exitcode for process in processes]
    for process in processes:
        if process.exitcode is None:
            process.kill()

    assert codes == [0] * writers
    tasks = store.load_tasks(workflow_id)
    assert len(tasks) == writers * per_writer
    assert {t.status for t in tasks} == {TaskStatus.SUCCESSFUL}
    assert all(t.attempts == 1 for t in tasks)
    checkpoints = store.load_checkpoints(workflow_id, task_ids)
    assert {k: loads(v.data) for k, v in checkpoints.items()} == {t: t for t in task_ids}


def test_tasks_started_marks_a_batch(store, workflow_id):
    _create(store, workflow_id, ["a", "b", "c"])
    store.tasks_started(workflow_id, [("a", 10.0), ("b", 11.0)])

    tasks = {t.task_id: t for t in store.load_tasks(workflow_id)}
    assert (tasks["a"].status, tasks["a"].started_at, tasks["a"].attempts) == (
        TaskStatus.RUNNING,
        10.0,
        1,
    )
    assert (tasks["b"].status, tasks["b"].started_at) == (TaskStatus.RUNNING, 11.0)
    assert tasks["c"].status == TaskStatus.PENDING


def test_a_terminal_status_filter_is_limited_in_sql(store, workflow_id):
    created = [f"{workflow_id}-{i}" for i in range(5)]
    for each in created:
        _create(store, each)
        store.finish(each, None, WorkflowStatus.FAILED, error="boom")
    page = store.list_workflows(statuses=[WorkflowStatus.FAILED], limit=2, id_prefix=workflow_id)
    assert [r.workflow_id for r in page] == created[::-1][:2]


def test_a_continuation_whose_task_id_is_taken_is_refused(store, workflow_id):
    _create(store, workflow_id, ["a", "out"])
    assert store.acquire(workflow_id, owner_id("m"))
    data = dumps("graph")
    continuation = Checkpoint(kind="continuation", data=data, blob=None, size=len(data))
    taken = NewTask(task_id="a", name="mod.a", upstream=[], user_metadata={})
    with pytest.raises(DatabaseError):
        store.task_continued(workflow_id, "out", time.time(), 1, _built(continuation, [taken]))
    # Nothing of it stays: the task may be continued again with new ids.
    assert store.get_task(workflow_id, "out").status == TaskStatus.PENDING
    assert store.load_checkpoint(workflow_id, "out") is None


def test_task_ids_are_reserved_after_those_the_workflow_has(store, workflow_id):
    _create(store, workflow_id, ["m.f", "m.f_1", "m.g", "m.f_other"])
    _create(store, f"{workflow_id}-other", ["m.g"])

    first = _reserved(store, workflow_id, "m.f", {"m.f": 2, "m.h": 1})
    again = _reserved(store, workflow_id, "m.g", {"m.f": 1, "m.h": 1})

    # m.f had three ids that start with it (m.f_other counts, so nothing can clash).
    assert first == {"m.f": 3, "m.h": 0}
    assert again == {"m.f": 5, "m.h": 1}
    other = _reserved(store, f"{workflow_id}-other", "m.g", {"m.f": 1})
    assert other == {"m.f": 0}


def test_a_continuation_that_cannot_be_built_reserves_nothing(store, workflow_id):
    _create(store, workflow_id, ["m.f", "m.g"])

    def broken(reserve):
        reserve({"m.h": 5})
        raise InvalidTypeError("not a DAG")

    with pytest.raises(InvalidTypeError, match="not a DAG"):
        store.task_continued(workflow_id, "m.f", time.time(), 1, broken)

    assert _reserved(store, workflow_id, "m.g", {"m.h": 1}) == {"m.h": 0}
    assert store.get_task(workflow_id, "m.f").status == TaskStatus.PENDING


def _built(checkpoint: Checkpoint, tasks: list[NewTask]):
    """A continuation's ``expand`` that needs no ids of its own."""
    return lambda reserve: (checkpoint, tasks)


def _reserved(store, workflow_id: str, task_id: str, counts: dict[str, int]) -> dict[str, int]:
    """Continue ``task_id`` with a graph that needs ``counts`` ids; what was reserved."""
    reserved = []

    def expand(reserve):
        reserved.append(reserve(counts))
        data = dumps("graph")
        return Checkpoint(kind="continuation", data=data, blob=None, size=len(data)), []

    store.task_continued(workflow_id, task_id, time.time(), 1, expand)
    return reserved[-1]
