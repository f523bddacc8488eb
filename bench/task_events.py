"""What Ray's per-task event stream costs: plain three-task chains with it on and off.

    .venv/bin/python bench/task_events.py [--count 600] [--rounds 6]

Gnomon turns the stream off for its own tasks (``GNOMON_RAY_TASK_EVENTS``, default off).
Both variants run in one cluster, in alternating blocks, and each block's cost is the
whole machine's busy CPU (from /proc/stat) per chain: Ray's daemons and the GCS, which
receive the events, are counted too. The median over the blocks survives this
machine's swings of speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray
from throughput import busy_seconds


@ray.remote
def step(x: int) -> int:
    return x + 1


@ray.remote(num_cpus=0)
class Submitter:
    """Submits like the manager does: from an async actor, awaiting the chain's end."""

    async def chain(self, i: int, events: bool) -> int:
        task = step.options(enable_task_events=events)
        return await task.remote(task.remote(task.remote(i)))


def block(submitter, events: bool, count: int, in_flight: int = 50) -> tuple[float, float]:
    """(busy CPU ms per chain, chains per second) for ``count`` chains."""
    pending: list[ray.ObjectRef] = []
    busy, start = busy_seconds(), time.perf_counter()
    for i in range(count):
        if len(pending) >= in_flight:
            _, pending = ray.wait(pending, num_returns=1)
        pending.append(submitter.chain.remote(i, events))
    ray.get(pending)
    return 1000 * (busy_seconds() - busy) / count, count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    submitter = Submitter.remote()
    for events in (True, False):  # warm up
        block(submitter, events, 200)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for events in (True, False):
            results[events].append(block(submitter, events, args.count))
    cost = {events: statistics.median(c for c, _ in runs) for events, runs in results.items()}
    for events, runs in results.items():
        rate = statistics.median(r for _, r in runs)
        print(
            f"task events {'on ' if events else 'off'}: {cost[events]:6.2f} CPU ms per chain"
            f"   {rate:5.0f} chains/s (medians of {args.rounds})"
        )
    print(f"turning them off saves {100 * (1 - cost[False] / cost[True]):.1f}% of the CPU")
    ray.shutdown()


if __name__ == "__main__":
    main()
