"""Waiting costs nothing: 200 workflows wait for events on a 2-CPU Ray cluster.

    .venv/bin/python bench/events.py [--database-url URL] [--waiting 200]

Reports (issue 3):
- an unrelated 10-task workflow's time with 200 waiting workflows, as a ratio to the same
  run with nothing waiting (target: within 1.3x);
- the latency from ``send_event`` to the downstream task starting, p50 and p99
  (target: p50 < 50 ms, p99 < 250 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import ray

from executor import workflow


@ray.remote
def inc(x: int) -> int:
    return x + 1


@ray.remote
def started_at(event: tuple) -> float:
    return time.time()


def ten_tasks():
    node = inc.bind(0)
    for _ in range(9):
        node = inc.bind(node)
    return node


def time_ten(repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        workflow.run(ten_tasks())
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="gnomon-bench-")
    url = args.database_url or f"sqlite:///{storage}/bench.db"
    workflow.init(url, storage=storage)
    print(f"database: {url.split('@')[-1]}   waiting workflows: {args.waiting}   CPUs: 2")

    time_ten(2)  # warm up workers
    idle = time_ten(args.repeat)

    run = uuid.uuid4().hex[:6]
    ids = [f"wait-{run}-{i}" for i in range(args.waiting)]
    refs = [
        workflow.run_async(
            started_at.bind(workflow.wait_for_event(workflow.HTTPListener, event_key="go")),
            workflow_id=workflow_id,
        )
        for workflow_id in ids
    ]
    deadline = time.time() + 120
    while time.time() < deadline:
        running = workflow.list_all({"RUNNING"})
        if sum(1 for w, _ in running if w.startswith(f"wait-{run}")) == len(ids):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    busy = time_ten(args.repeat)
    print(
        f"10-task workflow: idle {idle * 1000:.0f} ms, with {args.waiting} waiting "
        f"{busy * 1000:.0f} ms, ratio {busy / idle:.2f}x (target <= 1.3x)"
    )

    latencies = []
    for workflow_id, ref in zip(ids, refs, strict=True):
        sent = time.time()
        workflow.send_event(workflow_id, "go", {"n": 1})
        latencies.append(ray.get(ref) - sent)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"send_event -> downstream start over {len(latencies)} events: "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (target p50 < 50, p99 < 250)"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
