"""Concurrency pools on real Ray: a cluster-wide limit across workflows, taken from the
tasks' own marks (their start and end times), never from Gnomon's rows."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import ray

from executor import workflow as api
from executor.actors import find_manager
from executor.pools import parse_rate
from executor.status import TaskStatus
from executor.store import Rate
from tests.waiting import eventually, process_gone


@ray.remote
def timed(marks: str, name: str, seconds: float) -> str:
    """Leave ``marks/name``: when this run started and ended."""
    started = time.time()
    time.sleep(seconds)
    Path(marks, name).write_text(f"{started} {time.time()}\n")
    return name


@ray.remote
def gather(*names: str) -> list[str]:
    return list(names)


@ray.remote
def until_go(marks: str, name: str) -> str:
    """Hold a slot until the test leaves ``marks/go``."""
    Path(marks, f"{name}.started").write_text(str(time.time()))
    eventually(lambda: Path(marks, "go").exists(), timeout=60, what="go")
    return name


def spans(marks: Path) -> dict[str, tuple[float, float]]:
    found = {}
    for path in marks.iterdir():
        if " " in (text := path.read_text().strip()):
            start, end = map(float, text.split())
            found[path.name] = (start, end)
    return found


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def pool(store) -> str:
    name = f"pool-{uuid.uuid4().hex[:8]}"
    store.set_pool(name, 3, None)
    return name


def in_pool(pool: str, **more):
    return api.options(pool=pool, **more)


def next_in(pool: str, marks: Path):
    """A task of ``pool`` that leaves ``marks/next`` at once."""
    return timed.options(**in_pool(pool)).bind(str(marks), "next", 0.0)


def test_twenty_tasks_of_five_workflows_never_pass_three(workflow, pool, marks, workflow_id):
    # Given five workflows of four tasks each, all in a pool of 3
    refs = []
    for w in range(5):
        tasks = [
            timed.options(**in_pool(pool)).bind(str(marks), f"w{w}-t{t}", 0.8) for t in range(4)
        ]
        refs.append(workflow.run_async(gather.bind(*tasks), workflow_id=f"{workflow_id}-{w}"))

    # When they all run
    results = ray.get(refs, timeout=120)

    # Then every task ran once, and never more than three at a time
    assert sorted(n for names in results for n in names) == sorted(
        f"w{w}-t{t}" for w in range(5) for t in range(4)
    )
    found = spans(marks)
    assert len(found) == 20
    assert most_at_once(list(found.values())) == 3


def test_a_task_waiting_for_a_slot_holds_no_cpu(workflow, store, pool, marks, workflow_id):
    store.set_pool(pool, 1, None)
    held = workflow.run_async(
        until_go.options(**in_pool(pool)).bind(str(marks), "first"), workflow_id=f"{workflow_id}-a"
    )
    eventually(lambda: Path(marks, "first.started").exists(), what="the slot to be taken")
    queued = workflow.run_async(
        until_go.options(**in_pool(pool)).bind(str(marks), "second"), workflow_id=f"{workflow_id}-b"
    )
    task_id = f"{__name__}.until_go"
    eventually(
        lambda: store.get_task(f"{workflow_id}-b", task_id).status == TaskStatus.QUEUED,
        what="the second task to queue",
    )
    # One CPU is held, by the first task only.
    total = ray.cluster_resources()["CPU"]
    eventually(lambda: ray.available_resources().get("CPU") == total - 1, what="CPUs")

    Path(marks, "go").write_text("go")
    assert ray.get([held, queued], timeout=60) == ["first", "second"]
    second = store.get_task(f"{workflow_id}-b", task_id)
    assert second.pool == pool
    assert second.queued_s > 0


def test_priority_orders_the_line(workflow, store, pool, marks, workflow_id):
    # Given a pool of one held by a task, and four tasks queued behind it
    store.set_pool(pool, 1, None)
    blocker = workflow.run_async(
        until_go.options(**in_pool(pool)).bind(str(marks), "blocker"), workflow_id=workflow_id
    )
    eventually(lambda: Path(marks, "blocker.started").exists(), what="the blocker")
    refs = []
    for name, priority in [("low", 0), ("high1", 5), ("mid", 1), ("high2", 5)]:
        task = timed.options(**in_pool(pool, priority=priority)).bind(str(marks), name, 0.05)
        wf = f"{workflow_id}-{name}"
        refs.append(workflow.run_async(task, workflow_id=wf))
        eventually(
            lambda wf=wf: store.get_task(wf, f"{__name__}.timed").status == TaskStatus.QUEUED,
            what=f"{name} to queue",
        )

    # When the blocker lets go
    Path(marks, "go").write_text("go")
    ray.get([blocker, *refs], timeout=60)

    # Then they ran highest priority first, first come first within one
    found = spans(marks)
    assert sorted(found, key=lambda name: found[name][0]) == ["high1", "high2", "mid", "low"]


@ray.remote(max_retries=0)
def dies_holding_a_slot(marks: str) -> None:
    Path(marks, "victim.started").write_text(str(time.time()))
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_workers_slot_comes_back(workflow, store, pool, marks, workflow_id):
    # Given a pool of one whose only slot is held by a task whose worker is killed
    store.set_pool(pool, 1, None)
    victim = workflow.run_async(
        dies_holding_a_slot.options(**in_pool(pool)).bind(str(marks)), workflow_id=workflow_id
    )
    eventually(lambda: Path(marks, "victim.started").exists(), what="the victim to start")
    waiting = workflow.run_async(next_in(pool, marks), workflow_id=f"{workflow_id}-next")
    with pytest.raises(api.WorkflowExecutionError):
        ray.get(victim, timeout=60)

    # Then the next task gets the slot well within the lease's 30 s
    started = time.time()
    assert ray.get(waiting, timeout=20) == "next"
    assert time.time() - started < 10
    eventually(lambda: store.get_pool(pool).used == 0, what="the slot back")


@ray.remote
def then(previous: str, marks: str, name: str) -> str:
    """Run after ``previous`` (in its chain), until ``marks/go-name`` exists."""
    Path(marks, f"{name}.started").write_text(str(time.time()))
    eventually(lambda: Path(marks, f"go-{name}").exists(), timeout=60, what=f"go-{name}")
    Path(marks, name).write_text(f"{Path(marks, f'{name}.started').read_text()} {time.time()}\n")
    return f"{previous}>{name}"


def test_a_chain_passes_its_slot_down_while_nobody_waits(workflow, store, pool, marks, workflow_id):
    # Given a pool of one, and three tasks of it each taking the one before (one Ray call)
    store.set_pool(pool, 1, None)
    pooled = then.options(**in_pool(pool))
    dag = pooled.bind(
        pooled.bind(pooled.bind("", str(marks), "a"), str(marks), "b"), str(marks), "c"
    )
    ref = workflow.run_async(dag, workflow_id=workflow_id)

    # Then each holds the one slot in turn, and it goes back at the end
    for name in "abc":
        eventually(lambda name=name: Path(marks, f"{name}.started").exists(), what=name)
        assert (store.get_pool(pool).used, store.get_pool(pool).queued) == (1, 0)
        Path(marks, f"go-{name}").write_text("go")
    assert ray.get(ref, timeout=60) == ">a>b>c"
    eventually(lambda: store.get_pool(pool).used == 0, what="the slot back")


def test_a_chain_lets_a_waiting_task_go_first(workflow, store, pool, marks, workflow_id):
    # Given a pool of one held by the first of a chain of two tasks, and another run's
    # task waiting in line for it
    store.set_pool(pool, 1, None)
    pooled = then.options(**in_pool(pool))
    chain = workflow.run_async(
        pooled.bind(pooled.bind("", str(marks), "a"), str(marks), "b"), workflow_id=workflow_id
    )
    eventually(lambda: Path(marks, "a.started").exists(), what="a")
    other = workflow.run_async(
        pooled.bind("", str(marks), "other"), workflow_id=f"{workflow_id}-other"
    )
    eventually(lambda: store.get_pool(pool).queued == 1, what="the other run to queue")

    # When the chain's first task ends
    Path(marks, "go-a").write_text("go")

    # Then the slot goes to the task that waited, not down the chain
    eventually(lambda: Path(marks, "other.started").exists(), what="the other run's task")
    assert not Path(marks, "b.started").exists()
    Path(marks, "go-other").write_text("go")
    Path(marks, "go-b").write_text("go")
    assert ray.get([chain, other], timeout=60) == [">a>b", ">other"]
    assert most_at_once(list(spans(marks).values())) == 1


@ray.remote(max_retries=1)
def dies_once(marks: str) -> str:
    first = Path(marks, "died")
    if not first.exists():
        first.write_text(str(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    Path(marks, "again.started").write_text(str(time.time()))
    eventually(lambda: Path(marks, "go").exists(), timeout=60, what="go")
    return "again"


def test_a_call_ray_runs_again_keeps_the_slot_taken_at_submission(
    workflow, store, pool, marks, workflow_id
):
    # Given a pool of one whose slot a run took at submission for a task whose first
    # worker dies, and a second run waiting for the slot
    store.set_pool(pool, 1, None)
    victim = workflow.run_async(
        dies_once.options(**in_pool(pool)).bind(str(marks)), workflow_id=workflow_id
    )
    eventually(lambda: Path(marks, "again.started").exists(), what="Ray's second call")
    waiting = workflow.run_async(next_in(pool, marks), workflow_id=f"{workflow_id}-next")
    eventually(lambda: store.get_pool(pool).queued == 1, what="the second run to queue")

    # While the task's second call runs, the slot stays its own: the other run waits
    time.sleep(1.5)
    assert not Path(marks, "next").exists()
    assert store.get_pool(pool).used == 1

    # And once it ends, the slot passes on
    Path(marks, "go").write_text("go")
    assert ray.get([victim, waiting], timeout=60) == ["again", "next"]
    assert spans(marks)["next"][0] > float(Path(marks, "again.started").read_text())
    eventually(lambda: store.get_pool(pool).used == 0, what="the slot back")


def test_a_canceled_runs_slot_comes_back(workflow, store, pool, marks, workflow_id):
    # Given a pool of one whose slot a running task took at submission
    store.set_pool(pool, 1, None)
    task = until_go.options(**in_pool(pool)).bind(str(marks), "held")
    workflow.run_async(task, workflow_id=workflow_id)
    eventually(lambda: Path(marks, "held.started").exists(), what="the task to start")
    assert store.get_pool(pool).used == 1

    # When its run is canceled
    workflow.cancel(workflow_id)

    # Then the slot goes back, and the next task in the pool runs
    eventually(lambda: store.get_pool(pool).used == 0, what="the slot back")
    assert workflow.run(next_in(pool, marks), workflow_id=f"{workflow_id}-next") == "next"


@ray.remote
def holds_until_go(marks: str) -> int:
    """Leave ``marks/attempt-<pid>`` and hold the slot until ``marks/go`` exists."""
    Path(marks, f"attempt-{os.getpid()}").write_text(str(time.time()))
    eventually(lambda: Path(marks, "go").exists(), timeout=60, what="go")
    return os.getpid()


def _attempts(marks: Path) -> list[int]:
    return [int(path.name.split("-")[1]) for path in marks.glob("attempt-*")]


def test_a_slot_taken_at_submission_follows_its_run_when_the_manager_dies(
    workflow, store, pool, marks, workflow_id
):
    # Given a pool of one whose slot a run took at submission, its task running
    store.set_pool(pool, 1, None)
    task = holds_until_go.options(**in_pool(pool)).bind(str(marks))
    ref = workflow.run_async(task, workflow_id=workflow_id)
    first = eventually(lambda: _attempts(marks), what="the task to start")[0]

    # When the workflow manager that took the slot is killed (Ray restarts it)
    ray.kill(find_manager(workflow._config), no_restart=False)
    api._owners.clear()  # ask for the restarted manager's owner id

    # Then the task it submitted dies with it, and the run, resumed, runs the task
    # again in the one slot: never two at once, and the slot back at the end
    eventually(lambda: process_gone(first), what="the first attempt's worker to die")
    again = eventually(lambda: set(_attempts(marks)) - {first}, timeout=60, what="a new attempt")
    assert len(again) == 1
    assert (store.get_pool(pool).used, store.get_pool(pool).queued) == (1, 0)
    Path(marks, "go").write_text("go")
    assert ray.get(ref, timeout=60) == again.pop()
    eventually(lambda: store.get_pool(pool).used == 0, what="the slot back")


def test_a_rate_of_five_a_second_holds_over_ten_seconds(workflow, store, pool, marks, workflow_id):
    # Given a wide pool limited to 5 starts a second, and 55 tasks
    store.set_pool(pool, 100, Rate(limit=5, period_s=1.0))
    tasks = [timed.options(**in_pool(pool)).bind(str(marks), f"t{i}", 0.0) for i in range(55)]

    # When they run
    workflow.run(gather.bind(*tasks), workflow_id=workflow_id)

    # Then, by the tasks' own clocks, no 5 s saw more than 30 starts (a sliding window of
    # 5 a second allows 5 per second plus the 5 of the window's first instant; a task's
    # function starts up to a second after its start is counted on a loaded machine, which
    # a longer window absorbs; without the rate all 55 start at once), and the first 10 s
    # saw at least half of the 50 it allows
    starts = sorted(start for start, _ in spans(marks).values())
    assert len(starts) == 55
    assert max(sum(1 for t in starts if s <= t < s + 5.0) for s in starts) <= 30
    assert sum(1 for t in starts if t < starts[0] + 10) >= 25


def test_a_pool_nobody_created_is_refused_at_submission(workflow, workflow_id):
    task = timed.options(**in_pool("nobody-made-" + workflow_id)).bind("/tmp", "x", 0)
    with pytest.raises(api.PoolNotFoundError, match="gnomon pool set"):
        workflow.run(task, workflow_id=workflow_id)


def test_a_canceled_run_leaves_the_line(workflow, store, pool, marks, workflow_id):
    store.set_pool(pool, 0, None)  # paused: its task can only wait
    ref = workflow.run_async(
        timed.options(**in_pool(pool)).bind(str(marks), "never", 0.0), workflow_id=workflow_id
    )
    eventually(lambda: store.get_pool(pool).queued == 1, what="the task to queue")
    workflow.cancel(workflow_id)
    with pytest.raises(api.WorkflowCancellationError):
        ray.get(ref, timeout=30)
    eventually(lambda: store.get_pool(pool).queued == 0, what="its place in line back")
    store.set_pool(pool, 1, None)
    assert store.get_workflow(workflow_id).status == api.WorkflowStatus.CANCELED
    assert not Path(marks, "never").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: api.options(pool="ware house"), "Invalid pool name 'ware house'"),
        (lambda: api.options(pool="x" * 101), "Invalid pool name"),
        (lambda: api.options(priority="high"), "priority must be an integer"),
        (lambda: api.options(retry=3), "retry must be a workflow.Retry"),
        (lambda: api.options(timeout=3), "Invalid workflow option"),
        (lambda: api.Retry(max_attempts=0), "max_attempts must be >= 1"),
        (lambda: api.Retry(backoff=0.5), "backoff must be >= 1"),
        (lambda: api.Retry(jitter=2), r"jitter must be within \[0, 1\]"),
        (lambda: api.Retry(on=3), "on must be an exception class"),
    ],
)
def test_bad_controls_are_refused_where_they_are_given(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_rates_read_as_people_write_them():
    assert parse_rate("5/s") == Rate(5, 1.0)
    assert parse_rate("100/min") == Rate(100, 60.0)
    assert parse_rate("10/30s") == Rate(10, 30.0)
    assert parse_rate("2 / hour") == Rate(2, 3600.0)
    assert str(Rate(10, 30.0)) == "10/30s"
    for bad in ("0/s", "5", "5/", "five/s", "5/fortnight", "-1/s"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)
