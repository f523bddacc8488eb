"""Concurrency pools in the store, the same on SQLite and PostgreSQL: slots as leases,
the line (priority, then first come), rates as a sliding window, and counters."""

from __future__ import annotations

import threading
import uuid

import pytest

from executor.errors import PoolNotFoundError
from executor.status import TaskStatus
from executor.store import Checkpoint, NewTask, Rate, SlotWait, owner_id
from executor.store.leases import HOSTNAME

TTL = 30.0
#: A live owner in this process, and one on another host (only its lease can tell).
HERE = owner_id("test")
ELSEWHERE = f"another-host/1/{uuid.uuid4().hex[:6]}"


def _value(data: bytes) -> Checkpoint:
    return Checkpoint(kind="value", data=data, blob=None, size=len(data))


@pytest.fixture
def pool(store) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    store.set_pool(name, 2, None)
    return name


@pytest.fixture
def run(store, workflow_id):
    """A workflow with tasks a..f, removed afterwards (it has no runnable graph)."""
    tasks = [NewTask(task_id=t, name=f"m.{t}", upstream=[], user_metadata={}) for t in "abcdef"]
    store.create_workflow(workflow_id, "pools", b"graph", None, "f", tasks, {})
    yield workflow_id
    store.delete_workflow(workflow_id)


def test_pools_are_created_changed_and_listed(store, pool):
    assert store.get_pool(pool).slots == 2
    record = store.set_pool(pool, 0, Rate(limit=5, period_s=1.0))
    assert (record.slots, record.rate, str(record.rate)) == (0, Rate(5, 1.0), "5/s")
    assert pool in [p.name for p in store.list_pools()]
    assert store.missing_pools([pool, "nope-" + pool]) == {"nope-" + pool}
    with pytest.raises(PoolNotFoundError, match="No pool 'nope"):
        store.get_pool("nope-" + pool)


def test_slots_are_never_taken_past_the_limit(store, pool, run):
    taken = [store.try_slot(pool, run, task, 0, HERE, TTL) for task in "abc"]
    assert taken == [True, True, False]
    assert store.get_pool(pool).used == 2
    # A holder trying again keeps its slot (a call Ray ran again).
    assert store.try_slot(pool, run, "a", 0, HERE, TTL) is True
    assert store.release_slot(pool, run, "a") is False  # nobody waits
    assert store.try_slot(pool, run, "c", 0, HERE, TTL) is True


def test_slots_taken_at_submission_stop_at_the_limit_highest_priority_first(store, pool, run):
    # Given a pool of 3 with one slot held already
    store.set_pool(pool, 3, None)
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)

    # When four tasks take slots in one go
    taken = store.take_slots(pool, run, [("b", 0), ("c", 5), ("d", 1), ("e", 5)], HERE, TTL)

    # Then the two free slots go to the highest priorities, first come within one
    assert taken == ["c", "e"]
    assert store.get_pool(pool).used == 3
    assert store.try_slot(pool, run, "b", 0, HERE, TTL) is False
    # A holder's slot goes back with release_slot as a slot taken alone does
    assert store.release_slot(pool, run, "c") is False
    assert store.get_pool(pool).used == 2


def test_slots_are_not_taken_at_submission_past_a_line_or_under_a_rate(store, pool, run):
    store.set_pool(pool, 1, None)
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)
    assert store.queue_for_slot(pool, run, "b", 0, HERE, TTL) is False
    store.set_pool(pool, 5, None)
    # Someone waits in line: nobody skips it, whatever the free slots.
    assert store.take_slots(pool, run, [("c", 9)], HERE, TTL) == []
    store.release_slot(pool, run, "b")
    assert store.take_slots(pool, run, [("c", 9)], HERE, TTL) == ["c"]
    # A rate counts starts as they happen: its tasks take their own slots.
    store.set_pool(pool, 5, Rate(limit=10, period_s=1.0))
    assert store.take_slots(pool, run, [("d", 0)], HERE, TTL) == []
    assert store.get_pool(pool).used == 2
    with pytest.raises(PoolNotFoundError):
        store.take_slots("nope-" + pool, run, [("e", 0)], HERE, TTL)


def test_the_line_is_by_priority_then_first_come(store, pool, run):
    store.set_pool(pool, 1, None)
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)
    for task, priority in [("b", 0), ("c", 5), ("d", 1), ("e", 5)]:
        assert store.queue_for_slot(pool, run, task, priority, HERE, TTL) is False
    assert store.get_task(run, "c").status == TaskStatus.QUEUED
    assert store.slot_waits(run) == {
        "c": SlotWait(pool, 0),
        "e": SlotWait(pool, 1),
        "d": SlotWait(pool, 2),
        "b": SlotWait(pool, 3),
    }
    # A newcomer of a lower or equal priority does not jump the line when a slot frees.
    assert store.release_slot(pool, run, "a") is True
    assert store.try_slot(pool, run, "f", 5, HERE, TTL) is False

    order = []
    for _ in range(4):
        granted, _ = store.grant_slots(pool, HERE, TTL)
        assert len(granted) == 1
        order.append(granted[0][1])
        assert store.get_task(run, order[-1]).status == TaskStatus.PENDING
        store.release_slot(pool, run, order[-1])
    assert order == ["c", "e", "d", "b"]
    assert store.get_task(run, "b").queued_s >= 0


def test_a_manager_grants_only_its_own_waiters_in_line_order(store, pool, run):
    store.set_pool(pool, 1, None)
    store.queue_for_slot(pool, run, "a", 0, ELSEWHERE, TTL)
    store.queue_for_slot(pool, run, "b", 0, HERE, TTL)
    assert store.grant_slots(pool, HERE, TTL) == ([], None)  # 'a' is first: its owner's
    assert store.grant_slots(pool, ELSEWHERE, TTL)[0] == [(run, "a")]


def test_a_dead_holder_gives_its_slot_back(store, clocked, clock, pool, run):
    store.set_pool(pool, 1, None)
    # A holder on this host whose process is gone is seen at once.
    gone = f"{HOSTNAME}/{2**22 + 12345}/gone"
    assert clocked.try_slot(pool, run, "a", 0, gone, TTL)
    assert clocked.try_slot(pool, run, "b", 0, HERE, TTL) is True
    # One on another host holds it until its lease runs out, unless renewed.
    clocked.release_slot(pool, run, "b")
    assert clocked.try_slot(pool, run, "c", 0, ELSEWHERE, TTL)
    clock.advance(TTL - 1)
    clocked.renew_slots(ELSEWHERE, TTL)
    clock.advance(TTL - 1)
    assert clocked.try_slot(pool, run, "d", 0, HERE, TTL) is False
    clock.advance(2)
    assert clocked.try_slot(pool, run, "d", 0, HERE, TTL) is True


def test_a_rate_is_a_sliding_window(store, clocked, clock, pool, run):
    store.set_pool(pool, 10, Rate(limit=2, period_s=1.0))
    assert clocked.try_slot(pool, run, "a", 0, HERE, TTL)
    clock.advance(0.5)
    assert clocked.try_slot(pool, run, "b", 0, HERE, TTL)
    assert clocked.try_slot(pool, run, "c", 0, HERE, TTL) is False
    clocked.queue_for_slot(pool, run, "c", 0, HERE, TTL)
    granted, next_start = clocked.grant_slots(pool, HERE, TTL)
    assert granted == []
    assert next_start == pytest.approx(clock.now + 0.5)  # when 'a' leaves the window
    clock.advance(0.5)
    assert clocked.grant_slots(pool, HERE, TTL)[0] == [(run, "c")]


def test_a_start_counts_when_it_happens(store, clocked, clock, pool, run):
    """A granted task that starts late counts from its start; if the window filled
    meanwhile, it goes back to the head of the line."""
    store.set_pool(pool, 10, Rate(limit=1, period_s=1.0))
    clocked.queue_for_slot(pool, run, "a", 0, HERE, TTL)
    assert clocked.grant_slots(pool, HERE, TTL)[0] == [(run, "a")]
    clock.advance(2)  # 'a' has not started yet; its grant left the window
    assert clocked.try_slot(pool, run, "b", 0, HERE, TTL) is True
    clock.advance(0.1)
    assert clocked.try_slot(pool, run, "a", 0, HERE, TTL) is False
    assert clocked.slot_waits(run) == {"a": SlotWait(pool, 0)}
    clock.advance(1)
    assert clocked.grant_slots(pool, HERE, TTL)[0] == [(run, "a")]
    assert clocked.try_slot(pool, run, "a", 0, HERE, TTL) is True


def test_a_paused_pool_grants_nothing_until_it_grows(store, pool, run):
    store.set_pool(pool, 0, None)
    assert store.try_slot(pool, run, "a", 0, HERE, TTL) is False
    store.queue_for_slot(pool, run, "a", 0, HERE, TTL)
    assert store.grant_slots(pool, HERE, TTL) == ([], None)
    store.set_pool(pool, 1, None)
    assert store.grant_slots(pool, HERE, TTL)[0] == [(run, "a")]


def test_a_workflows_slots_go_back_with_it(store, pool, run):
    store.try_slot(pool, run, "a", 0, HERE, TTL)
    store.queue_for_slot(pool, run, "b", 0, ELSEWHERE, TTL)
    assert store.release_slots(run, owner=ELSEWHERE) == {pool}
    assert (store.get_pool(pool).used, store.get_pool(pool).queued) == (1, 0)
    store.release_slots(run)
    assert store.get_pool(pool).used == 0


def test_a_workflows_slots_go_back_by_task(store, pool, run):
    store.set_pool(pool, 3, None)
    assert store.take_slots(pool, run, [("a", 0), ("b", 0), ("c", 0)], HERE, TTL) == list("abc")
    # Only those tasks' rows, and only while still leased to the owner named
    store.try_slot(pool, run, "b", 0, ELSEWHERE, TTL)  # taken over by its worker
    assert store.release_slots(run, owner=HERE, task_ids=["a", "b"]) == {pool}
    assert store.get_pool(pool).used == 2
    assert store.release_slots(run, owner=HERE, task_ids=["a"]) == set()


@pytest.mark.parametrize(
    ("graph_output", "log"),
    [(False, None), (True, None), (False, (1.0, "printed\n"))],
    ids=["task", "graph-output", "with-log"],
)
def test_a_finish_gives_the_slot_back_in_its_transaction(store, pool, run, graph_output, log):
    # Given a and b holding both slots, and c waiting in line
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)
    assert store.try_slot(pool, run, "b", 0, HERE, TTL)
    store.queue_for_slot(pool, run, "c", 0, HERE, TTL)

    # When a finishes in the pool, and then b (with nobody left waiting)
    a = store.task_finished(
        run, "a", _value(b"a"), "'a'", 1.0, 1, graph_output=graph_output, log=log, pool=pool
    )
    assert (store.get_pool(pool).used, a.waiting) == (1, True)
    assert store.grant_slots(pool, HERE, TTL)[0] == [(run, "c")]
    store.release_slot(pool, run, "c")
    b = store.task_finished(run, "b", _value(b"b"), "'b'", 1.0, 1, log=log, pool=pool)

    # Then each finish recorded the task and freed its slot, once
    assert (store.get_pool(pool).used, b.waiting) == (0, False)
    assert store.get_task(run, "a").status == TaskStatus.SUCCESSFUL
    assert store.try_slot(pool, run, "d", 0, HERE, TTL)
    assert store.try_slot(pool, run, "e", 0, HERE, TTL)
    # A finish recorded already, whose slot went back already, frees no other slot.
    again = store.task_finished(run, "a", _value(b"a"), "'a'", 1.0, 1, log=log, pool=pool)
    assert (again.outcome, store.get_pool(pool).used) == (False, 2)
    store.task_finished(run, "d", _value(b"d"), "'d'", 1.0, 1, log=log, pool=pool)
    assert store.get_pool(pool).used == 1


@pytest.mark.parametrize(
    ("graph_output", "log"),
    [(False, None), (True, None), (False, (1.0, "printed\n"))],
    ids=["task", "graph-output", "with-log"],
)
def test_a_finish_hands_its_slot_on_unless_someone_waits(store, pool, run, graph_output, log):
    def finish(task: str, hand_to: str):
        return store.task_finished(
            run, task, _value(task.encode()), repr(task), 1.0, 1,
            graph_output=graph_output, log=log, pool=pool, hand_to=hand_to,
        )  # fmt: skip

    # Given a pool of one held by a
    store.set_pool(pool, 1, None)
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)

    # When a finishes, handing its slot to b with nobody waiting
    a = finish("a", "b")

    # Then b holds it (taking nothing: it holds it already), and the pool is as full
    assert (a.handed, a.waiting) == (True, False)
    assert store.get_task(run, "a").status == TaskStatus.SUCCESSFUL
    assert store.get_pool(pool).used == 1
    assert store.try_slot(pool, run, "b", 0, HERE, TTL) is True
    assert store.try_slot(pool, run, "c", 0, HERE, TTL) is False

    # When someone waits in line, b's finish gives the slot back instead
    store.queue_for_slot(pool, run, "d", 0, HERE, TTL)
    b = finish("b", "c")
    assert (b.handed, b.waiting) == (False, True)
    assert store.get_pool(pool).used == 0
    assert store.grant_slots(pool, HERE, TTL)[0] == [(run, "d")]


def test_unknown_pools_are_refused(store, run):
    with pytest.raises(PoolNotFoundError):
        store.try_slot("nope-" + run, run, "a", 0, HERE, TTL)
    with pytest.raises(PoolNotFoundError):
        store.queue_for_slot("nope-" + run, run, "a", 0, HERE, TTL)


def test_counters_only_grow(store):
    name = f"test_{uuid.uuid4().hex[:8]}"
    store.count({name: 2})
    store.count({name: 1, "other_" + name: 0})
    counters = store.counters()
    assert counters[name] == 3
    assert "other_" + name not in counters


def test_racing_takers_never_pass_the_limit(store, pool, run):
    """Threads taking slots at once, each on a connection of its own: exactly the
    pool's three slots are taken, and its count of them agrees with its rows."""
    store.set_pool(pool, 3, None)
    start = threading.Barrier(6)
    taken: list[bool] = []

    def take(task: str) -> None:
        start.wait()
        taken.append(store.try_slot(pool, run, task, 0, HERE, TTL))

    threads = [threading.Thread(target=take, args=(t,)) for t in "abcdef"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == [False] * 3 + [True] * 3
    assert store.get_pool(pool).used == 3
    for task in "abcdef":
        store.release_slot(pool, run, task)
    assert store.get_pool(pool).used == 0
    assert store.try_slot(pool, run, "a", 0, HERE, TTL)
