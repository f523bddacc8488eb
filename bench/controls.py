"""Execution controls (issue 16): what a pool slot costs a task, and how fast a freed
slot is taken, measured in one process.

    .venv/bin/python bench/controls.py [--database-url URL] [--repeat 5] [--tasks 200]

1. Overhead: the same workflow with every task in a pool wide enough never to queue
   (the slot is taken and given back, nothing waits) and without a pool, interleaved;
   medians and their ratio (target <= 1.2x). Two shapes of ``--tasks`` tasks: a fan-out
   of independent tasks, and pipelines of three tasks, each taking the one before
   (which run as one Ray call each).
2. Hand-off: ``--handoff`` tasks queued in a pool of one slot (a first task holds it
   until they all wait in line), each running 20 ms; the gap from one task's function
   returning to the next one's function starting, from the tasks' own clocks (target
   p99 < 50 ms). It includes the finished task's checkpoint and the slot's release,
   the manager's grant, and Ray starting the next call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any

import ray

from executor import workflow
from executor.config import handles

warnings.filterwarnings("ignore", category=DeprecationWarning)


@ray.remote
def step(i: int) -> int:
    return i + 1


@ray.remote
def busy(i: int, seconds: float) -> tuple[float, float]:
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


@ray.remote
def until(gate: str) -> tuple[float, float]:
    """Holds its slot until ``gate`` exists."""
    started = time.time()
    while not Path(gate).exists():
        time.sleep(0.005)
    return started, time.time()


@ray.remote
def gather(*values: object) -> list[object]:
    return list(values)


def fan_out(tasks: int, pool: str | None):
    options = workflow.options(pool=pool) if pool else workflow.options()
    return gather.bind(*[step.options(**options).bind(i) for i in range(tasks)])


def pipelines(tasks: int, pool: str | None):
    options = workflow.options(pool=pool) if pool else workflow.options()
    pooled = step.options(**options)
    return gather.bind(*[pooled.bind(pooled.bind(pooled.bind(i))) for i in range(tasks // 3)])


def timed(dag) -> float:
    began = time.perf_counter()
    workflow.run(dag)
    return time.perf_counter() - began


def overhead(tasks: int, repeat: int, pool: str, shape: Any) -> None:
    timed(shape(tasks, None))
    timed(shape(tasks, pool))  # warm workers and caches
    plain, pooled = [], []
    for _ in range(repeat):
        plain.append(timed(shape(tasks, None)))
        pooled.append(timed(shape(tasks, pool)))
    p, q = statistics.median(plain), statistics.median(pooled)
    tasks = tasks // 3 * 3 if shape is pipelines else tasks
    print(
        f"overhead: {shape.__name__.replace('_', '-')} of {tasks}: no pool {p * 1000:7.1f} ms "
        f"({p / tasks * 1000:.2f} ms/task) | pool {q * 1000:7.1f} ms "
        f"({q / tasks * 1000:.2f} ms/task) | ratio {q / p:4.2f}x (target <= 1.2x); "
        f"runs: no pool {[round(x, 2) for x in plain]}, pool {[round(x, 2) for x in pooled]}"
    )


def handoff(tasks: int, repeat: int, pool: str, store: Any) -> None:
    """A first task holds the slot until every other task waits in line for it, so
    each hand-off measured is from a slot freed to a task already queued for it."""
    gaps: list[float] = []
    for _ in range(repeat):
        gate = Path(tempfile.mkdtemp(prefix="gnomon-bench-")) / "go"
        first = workflow.run_async(
            until.options(**workflow.options(pool=pool)).bind(str(gate)), workflow_id=None
        )
        _until(lambda: store.get_pool(pool).used == 1)
        dag = gather.bind(
            *[busy.options(**workflow.options(pool=pool)).bind(i, 0.02) for i in range(tasks)]
        )
        rest = workflow.run_async(dag)
        _until(lambda: store.get_pool(pool).queued == tasks)
        gate.touch()
        spans = sorted([ray.get(first), *ray.get(rest)])
        overlaps = sum(1 for a, b in pairwise(spans) if b[0] < a[1])
        assert overlaps == 0, f"{overlaps} task(s) ran at once in a pool of one"
        gaps += [b[0] - a[1] for a, b in pairwise(spans)]
    gaps.sort()
    p50 = statistics.median(gaps)
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print(
        f"hand-off: pool of 1, {len(gaps)} hand-offs to a queued task: p50 {p50 * 1000:.1f} ms, "
        f"p90 {gaps[int(len(gaps) * 0.9)] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {gaps[-1] * 1000:.1f} ms (target p99 < 50 ms)"
    )


def _until(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench's tasks did not get where they should")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--handoff", type=int, default=40)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="gnomon-bench-")
    url = args.database_url or f"sqlite:///{storage}/bench.db"
    config = workflow.init(url, storage=storage)
    store = handles(config).store
    print(f"database: {url.split('@')[-1]}   Ray {ray.__version__}   repeat {args.repeat}")
    wide, single = f"wide-{uuid.uuid4().hex[:6]}", f"single-{uuid.uuid4().hex[:6]}"
    store.set_pool(wide, 1_000_000, None)
    store.set_pool(single, 1, None)
    overhead(args.tasks, args.repeat, wide, fan_out)
    overhead(args.tasks, args.repeat, wide, pipelines)
    handoff(args.handoff, args.repeat, single, store)
    ray.shutdown()


if __name__ == "__main__":
    main()
