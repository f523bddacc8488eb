"""Two checkouts of Gnomon under the same load at the same moment: CPU per workflow of each.

    .venv/bin/python bench/side_by_side.py OLD_TREE NEW_TREE [--database-url URL]
                                           [--seconds 30] [--rounds 3]

This machine's speed swings by half within a minute, which hides a 5% change between
runs made one after the other. Here each tree gets its own local Ray cluster and runs
``bench/throughput.py``'s 3-task workflows over the same time window, so both see the
same machine; each reports the CPU of its own processes (driver, manager, workers,
raylet) per completed workflow. PostgreSQL's share is not split between them. Now and
then Ray starts a worker process inside the window, and its seconds of imports swamp a
30 s comparison: the share of such processes is shown (if it is there, that round says
little). Make OLD_TREE with ``git worktree add /tmp/old <commit>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

#: Seconds both clusters get to start and warm up before the common window opens. Two
#: clusters starting at once on this machine took up to 17 s to have their task workers
#: up (Ray starts them on demand, and each imports for seconds); at 15 s one tree in
#: each round paid for that inside the window.
WARM_UP = 30


def parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except OSError:  # exited meanwhile
                continue
    return found


def descendants(root: int) -> set[int]:
    tree = parents()
    mine = {root}
    grown = True
    while grown:
        grown = False
        for pid, parent in tree.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grown = True
    return mine


def run_load(database_url: str | None, start_at: float, seconds: float) -> None:
    """One tree's side: load until the window opens, measure through it, print JSON."""
    import ray
    from cpu_split import cpu_seconds, kind
    from throughput import three_tasks

    from executor import workflow

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="gnomon-side-")
    workflow.init(database_url or f"sqlite:///{storage}/bench.db", storage=storage)
    run = uuid.uuid4().hex[:8]
    pending: list = []
    completed = submitted = 0
    failures: Counter[str] = Counter()

    def step() -> None:
        nonlocal pending, completed, submitted
        if len(pending) >= 50:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done)
            except ray.exceptions.RayError as error:  # an old tree's bug must not end the run
                failures[type(error).__name__] += 1
            completed += 1
        pending.append(
            workflow.run_async(three_tasks(submitted), workflow_id=f"sbs-{run}-{submitted}")
        )
        submitted += 1

    while time.time() < start_at:
        step()
    before, completed_before = cpu_seconds(), completed
    while time.time() < start_at + seconds:
        step()
    after, count = cpu_seconds(), completed - completed_before
    ray.get(pending)
    split: Counter[str] = Counter()
    born = 0.0
    for pid in descendants(os.getpid()) & after.keys():
        command, spent = after[pid]
        split[kind(pid, command)] += spent - before.get(pid, (command, 0.0))[1]
        if pid not in before:
            born += spent
    ms = {name: 1000 * spent / count for name, spent in split.items()}
    total = sum(ms.values())
    result = {"rate": count / seconds, "ms": ms, "total": total, "failed": failures}
    print(json.dumps({**result, "born": 1000 * born / count}))
    ray.shutdown()


def compare(trees: list[str], database_urls: list[str], seconds: float, rounds: int) -> None:
    script = os.path.abspath(__file__)
    totals: dict[str, list[float]] = {tree: [] for tree in trees}
    for number in range(1, rounds + 1):
        start_at = time.time() + WARM_UP
        command = [sys.executable, script, "--load", str(start_at), "--seconds", str(seconds)]
        given = database_urls * 2 if len(database_urls) == 1 else database_urls
        urls = dict(zip(trees, given, strict=False))
        children = {
            tree: subprocess.Popen(
                command + (["--database-url", urls[tree]] if tree in urls else []),
                cwd=tree,
                env={**os.environ, "PYTHONPATH": tree},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tree in trees
        }
        for tree, child in children.items():
            out, err = child.communicate(timeout=WARM_UP + seconds + 300)
            if child.returncode != 0:
                sys.exit(f"{tree} failed:\n" + "\n".join(err.splitlines()[-15:]))
            result = json.loads(out.strip().splitlines()[-1])
            totals[tree].append(result["total"])
            parts = "  ".join(f"{k} {v:.2f}" for k, v in sorted(result["ms"].items()))
            print(
                f"round {number} {tree}: {result['rate']:6.1f}/s  CPU ms per workflow "
                f"{result['total']:.2f} ({parts})"
                + (f"  failed: {result['failed']}" if result["failed"] else "")
                + (
                    f"  (of which {result['born']:.2f} in processes started meanwhile)"
                    if result["born"]
                    else ""
                )
            )
    old, new = (statistics.median(totals[tree]) for tree in trees)
    print(f"median CPU ms per workflow: {old:.2f} -> {new:.2f} ({100 * (new / old - 1):+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", help="OLD_TREE NEW_TREE")
    parser.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="once for both trees, or twice (OLD's, then NEW's) when their schemas differ",
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load is not None:
        run_load(args.database_url[0] if args.database_url else None, args.load, args.seconds)
        return
    if len(args.trees) != 2:
        parser.error("give two checkouts: OLD_TREE NEW_TREE")
    trees = [os.path.abspath(tree) for tree in args.trees]
    compare(trees, args.database_url, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
