"""Where a workflow's CPU goes: CPU time per process kind, per three-task workflow.

    .venv/bin/python bench/cpu_split.py [--database-url URL] [--count 600] [--plain]

Throughput on a shared 2-core machine swings from run to run; CPU seconds per workflow
do not, so this is the figure to compare before and after a change to the hot path. It
reads every process's CPU time from /proc before and after the run of
``bench/throughput.py``'s 3-task workflows, and groups it: the driver (this process),
the manager actor, the Ray workers running tasks, Ray's own daemons and PostgreSQL.
``--plain`` measures the same chains submitted by an async actor in plain Ray: the floor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import ray
from throughput import PLAIN, durable, measure, three_tasks

#: Process kinds, by a piece of their command line; the first that matches wins.
KINDS = ("WorkflowManager", "ray::Floor", "Dashboard", "raylet", "gcs_server", "postgres", "ray::")


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Each process's (command line, user+system CPU seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (command, (int(fields[11]) + int(fields[12])) / tick)
    return found


def kind(pid: int, command: str) -> str:
    if pid == os.getpid():
        return "driver"
    for name in KINDS:
        if name in command:
            return "Ray workers" if name == "ray::" else name
    return "other"


@ray.remote(num_cpus=0)
class Floor:
    """The plain-Ray shape of a workflow: an async actor awaiting a 3-task chain."""

    async def run(self, i: int) -> int:
        return await PLAIN["3-task"](i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    if args.plain:
        floor = Floor.remote()

        def start_one(i: int):
            return floor.run.remote(i)
    else:
        from executor import workflow

        storage = tempfile.mkdtemp(prefix="gnomon-bench-")
        workflow.init(args.database_url or f"sqlite:///{storage}/bench.db", storage=storage)
        start_one = durable(three_tasks)
    measure(start_one, 100, 50)  # warm up: workers, pools, caches
    before = cpu_seconds()
    rate = measure(start_one, args.count, 50)
    after = cpu_seconds()
    split: Counter[str] = Counter()
    for pid, (command, seconds) in after.items():
        split[kind(pid, command)] += seconds - before.get(pid, (command, 0.0))[1]
    print(f"{'plain Ray' if args.plain else 'workflows'}: {rate:.0f}/s; CPU ms per workflow:")
    for name, seconds in split.most_common():
        if seconds > 0.01:
            print(f"  {name:16s} {1000 * seconds / args.count:6.2f}")
    print(f"  {'total':16s} {1000 * sum(split.values()) / args.count:6.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
