"""Completed workflows per second, 1-task and 3-task, on this machine.

    .venv/bin/python bench/throughput.py [--database-url URL] [--count 400] [--in-flight 50]
                                         [--rounds 3] [--ray-address HOST:PORT]

Workflows are submitted through the Python API with at most ``--in-flight`` outstanding.
The same chains as plain Ray tasks (no durability, three Ray calls) give the floor on this
machine; a durable chain runs in one Ray call (its tasks are chained, each still
checkpointed), so the ratio is not a like-for-like count of Ray calls. This
machine's speed swings by half within a minute, so durable and plain runs alternate
``--rounds`` times and the ratio is taken per round: each ratio compares two runs a few
seconds apart, and the median of them is what survives the noise. The whole machine's
busy CPU per completed workflow is reported too (PostgreSQL and Ray's daemons included):
it moves less with the machine's speed than the rates do.
For comparison (issue 6): DBOS Transact on SQLite measured 67-85 one-step workflows/s
here; the target is 200 three-task workflows/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

import ray

from executor import workflow
from executor.cluster import connect


@ray.remote
def step(x: int) -> int:
    return x + 1


def one_task(i: int):
    return step.bind(i)


def three_tasks(i: int):
    return step.bind(step.bind(step.bind(i)))


def durable(build):
    run = uuid.uuid4().hex[:8]
    return lambda i: workflow.run_async(build(i), workflow_id=f"tp-{run}-{i}")


#: The same chains as plain ``.remote()`` calls.
PLAIN = {
    "1-task": lambda i: step.remote(i),
    "3-task": lambda i: step.remote(step.remote(step.remote(i))),
}


def measure(start_one, count: int, in_flight: int) -> float:
    pending: list[ray.ObjectRef] = []
    start = time.perf_counter()
    for i in range(count):
        if len(pending) >= in_flight:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
        pending.append(start_one(i))
    ray.get(pending)
    return count / (time.perf_counter() - start)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (neither idle nor waiting on I/O)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure_cpu(start_one, count: int, in_flight: int) -> tuple[float, float]:
    """(completed per second, the machine's busy CPU ms per completed one)."""
    before = busy_seconds()
    rate = measure(start_one, count, in_flight)
    return rate, 1000 * (busy_seconds() - before) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (token in RAY_AUTH_TOKEN) instead of a local 2-CPU Ray",
    )
    args = parser.parse_args()
    if args.ray_address:
        connect(args.ray_address, start_node=True, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="gnomon-bench-")
    url = args.database_url or f"sqlite:///{storage}/bench.db"
    workflow.init(url, storage=storage)
    measure(durable(one_task), 50, args.in_flight)  # warm up
    measure(PLAIN["1-task"], 50, args.in_flight)
    print(
        f"database: {url.split('@')[-1]}   workflows: {args.count}   in flight: {args.in_flight}"
        f"   rounds: {args.rounds}"
    )
    for name, build in (("1-task", one_task), ("3-task", three_tasks)):
        rates, floors, costs, floor_costs = [], [], [], []
        for _ in range(args.rounds):
            rate, cost = measure_cpu(durable(build), args.count, args.in_flight)
            floor, floor_cost = measure_cpu(PLAIN[name], args.count, args.in_flight)
            rates.append(rate), costs.append(cost)
            floors.append(floor), floor_costs.append(floor_cost)
        ratio = statistics.median(r / f for r, f in zip(rates, floors, strict=True))
        print(
            f"{name} workflows: median {statistics.median(rates):6.1f} completed/s "
            f"(best {max(rates):6.1f})   plain Ray: median {statistics.median(floors):6.1f}/s   "
            f"ratio {ratio:.2f}\n"
            f"    machine CPU per workflow: median {statistics.median(costs):5.2f} ms"
            f"   plain Ray: {statistics.median(floor_costs):5.2f} ms"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
