"""fib(12) by continuations, this checkout against an earlier commit, as a ratio.

    .venv/bin/python bench/fib_against.py REF [--database-url URL] [--rounds 3] [--repeat 5]

This machine's speed swings within minutes, so seconds measured at different times do
not compare. Each round runs ``bench/overhead.py``'s fib(12) ``--repeat`` times from a
worktree of REF, then from this checkout, each in a fresh process with Ray of its own;
the ratio of the two medians is taken per round, and the median of those is reported.
Issue 14's target, fib(12) from 3.5 s to under 2 s, is 0.57x of the code it was filed
against (aa75d8a).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Run in each tree: fib(12) timed ``repeat`` times after a warm-up; prints the times.
PROBE = """
import json, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, "bench")
import ray
from executor import workflow
from overhead import fib
url, repeat = sys.argv[1], int(sys.argv[2])
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
storage = tempfile.mkdtemp(prefix="gnomon-bench-")
workflow.init(url or f"sqlite:///{storage}/bench.db", storage=storage)
workflow.run(fib.bind(8))
times = []
for _ in range(repeat):
    start = time.perf_counter()
    workflow.run(fib.bind(12))
    times.append(time.perf_counter() - start)
ray.shutdown()
print(json.dumps(times))
"""


def fib_times(tree: Path, url: str, repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url, str(repeat)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        sys.exit(f"fib(12) failed in {tree}:\n{done.stderr[-4000:]}")
    times: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ref", help="the commit to compare against, e.g. aa75d8a")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gnomon-against-") as scratch:
        base = Path(scratch, "tree")
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.ref],
            check=True,
        )
        try:
            ratios = []
            for n in range(1, args.rounds + 1):
                then = statistics.median(fib_times(base, args.database_url, args.repeat))
                now = statistics.median(fib_times(ROOT, args.database_url, args.repeat))
                ratios.append(now / then)
                shown = f"{args.ref} {then:.2f} s | this checkout {now:.2f} s"
                print(f"round {n}: {shown} | {now / then:.2f}x")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)])
    print(f"fib(12): median ratio {statistics.median(ratios):.2f}x of {args.ref}")


if __name__ == "__main__":
    main()
