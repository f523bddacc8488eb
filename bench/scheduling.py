"""Scheduler benchmarks (issue 4), on SQLite and PostgreSQL, with real APScheduler and Ray.

    .venv/bin/python bench/scheduling.py [--fires 200] [--schedules 1000] [--duration 60]

1. Latency from a tick's due time (its logical date) to the first task of its run
   starting, over the fires of an every-second schedule; the first fires (cold Ray
   workers) are dropped as warm-up. Split into due -> run row created (the scheduler)
   and created -> task started (the executor).
2. Capacity: ``--schedules`` interval schedules every 10 s (aligned, so all fire in the
   same second) for ``--duration`` seconds: missed fires (ticks without a run), how late
   the runs were created, and this process's CPU while it schedules them.

PostgreSQL: a scratch database is created as ``$GNOMON_TEST_PG`` (default
``postgresql+psycopg://gnomon@127.0.0.1:5432/postgres``) and dropped at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
import warnings
from datetime import datetime, timezone

import ray
from scratch import database, ms

from executor.config import handles
from scheduler.registry import Registry, parse_logical_date
from scheduler.service import SchedulerService

warnings.filterwarnings("ignore", category=DeprecationWarning)
#: Fires dropped from the latency figures: the first runs start Ray workers.
WARM_UP = 5


@ray.remote
def first_task() -> float:
    return time.time()


def factory(run):
    return first_task.bind()


def latency(url: str, storage: str, fires: int) -> None:
    registry = Registry()
    registry.register(factory, name="latency", interval=1, max_active_runs=10)
    service = SchedulerService(registry, url, storage=storage).start()
    store = service.store
    wanted = fires + WARM_UP
    deadline = time.monotonic() + wanted * 2 + 60
    while time.monotonic() < deadline:
        done = [r for r in store.list_workflows(name="latency") if r.ended_at]
        if len(done) >= wanted:
            break
        time.sleep(1)
    service.remove("latency")
    service.stop()
    runs = sorted(store.list_workflows(name="latency"), key=lambda r: r.workflow_id)
    runs = [r for r in runs if r.ended_at][WARM_UP:wanted]
    created, started = [], []
    for record in runs:
        due = parse_logical_date(record.workflow_id.split("@", 1)[1]).timestamp()
        task_start = min(
            t.started_at for t in store.load_tasks(record.workflow_id) if t.started_at is not None
        )
        created.append(record.created_at - due)
        started.append(task_start - due)
    print(f"  {len(runs)} fires of an every-second schedule (after {WARM_UP} warm-up fires)")
    print(f"  due -> first task started : {ms(started)}")
    print(f"  due -> run created        : {ms(created)}")


def capacity(url: str, storage: str, schedules: int, duration: float) -> None:
    registry = Registry()
    for index in range(schedules):
        registry.register(factory, name=f"cap_{index:04d}", interval=10, max_active_runs=100)
    began = time.monotonic()
    service = SchedulerService(registry, url, storage=storage).start()
    print(f"  registered {schedules} schedules in {time.monotonic() - began:.1f} s")
    # Measure whole 10 s periods, starting at the next tick.
    now = time.time()
    first_tick = (int(now) // 10 + 1) * 10
    last_tick = first_tick + int(duration // 10 - 1) * 10
    time.sleep(max(first_tick - time.time() - 0.5, 0))
    cpu_start, wall_start = _cpu(), time.time()
    time.sleep(max(last_tick + 9.5 - time.time(), 0))
    cpu, wall = _cpu() - cpu_start, time.time() - wall_start
    service.stop()
    store = handles(service.config).store
    ticks = range(first_tick, last_tick + 1, 10)
    lags, missed = [], 0
    records = {r.workflow_id: r for r in store.list_workflows(limit=None)}
    for index in range(schedules):
        for tick in ticks:
            moment = datetime.fromtimestamp(tick, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            record = records.get(f"cap_{index:04d}@{moment}")
            if record is None:
                missed += 1
            else:
                lags.append(record.created_at - tick)
    finished = sum(1 for r in records.values() if r.ended_at)
    expected = schedules * len(ticks)
    print(
        f"  {expected} fires expected over {len(ticks)} ticks, {missed} missed "
        f"({100 * missed / expected:.2f} %); {finished} runs finished by the end"
    )
    print(f"  due -> run created        : {ms(lags)}")
    print(
        f"  scheduler process CPU    : {100 * cpu / wall:.0f} % of one core "
        f"({cpu:.1f} s CPU over {wall:.1f} s)"
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fires", type=int, default=200)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-capacity", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for kind in args.databases.split(","):
        # A Ray per database, so one database's leftover runs do not load the next.
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
        with database(kind) as url, tempfile.TemporaryDirectory() as storage:
            if not args.skip_latency:
                print(f"{kind}: latency (load average {os.getloadavg()[0]:.1f})")
                latency(url, storage, args.fires)
            if not args.skip_capacity:
                print(f"{kind}: capacity (load average {os.getloadavg()[0]:.1f})")
                capacity(url, storage, args.schedules, args.duration)
            ray.shutdown()


if __name__ == "__main__":
    main()
