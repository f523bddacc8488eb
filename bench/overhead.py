"""Workflow overhead against plain Ray, in one process, as ratios.

    .venv/bin/python bench/overhead.py [--database-url URL] [--repeat 5]

Cases (issue 2): a chain of 100 dependent tasks, a fan-out of 300 tasks into one, and
fib(12) through continuations. Plain Ray runs the same DAG with ``dag.execute()``.
Each case alternates plain and workflow runs and reports medians, since this machine is
shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import ray

from executor import workflow

warnings.filterwarnings("ignore", category=DeprecationWarning)


@ray.remote
def inc(x: int) -> int:
    return x + 1


@ray.remote
def gather(*xs: int) -> int:
    return sum(xs)


@ray.remote
def add(a: int, b: int) -> int:
    return a + b


@ray.remote
def fib(n: int):
    if n <= 1:
        return n
    return workflow.continuation(add.bind(fib.bind(n - 1), fib.bind(n - 2)))


def plain_fib(n: int) -> int:
    @ray.remote
    def pfib(n: int) -> int:
        if n <= 1:
            return n
        return ray.get(padd.remote(pfib.remote(n - 1), pfib.remote(n - 2)))

    @ray.remote
    def padd(a: int, b: int) -> int:
        return a + b

    return ray.get(pfib.remote(n))


def chain(n: int = 100):
    node = inc.bind(0)
    for _ in range(n - 1):
        node = inc.bind(node)
    return node


def fan_out(n: int = 300):
    return gather.bind(*[inc.bind(i) for i in range(n)])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="gnomon-bench-")
    url = args.database_url or f"sqlite:///{storage}/bench.db"
    workflow.init(url, storage=storage)
    print(f"database: {url.split('@')[-1]}   Ray {ray.__version__}   repeat {args.repeat}")

    for name, build in (("chain of 100", chain), ("fan-out of 300", fan_out)):
        ray.get(build().execute())
        workflow.run(build())  # warm both paths
        plain, durable = [], []
        for _ in range(args.repeat):
            plain.append(timed(lambda: ray.get(build().execute())))
            durable.append(timed(lambda: workflow.run(build())))
        p, d = statistics.median(plain), statistics.median(durable)
        print(f"{name:16} plain {p * 1000:7.1f} ms   workflow {d * 1000:7.1f} ms   "
              f"ratio {d / p:4.2f}x   ({d / (100 if 'chain' in name else 301) * 1000:.2f} ms/task)")

    fibs = [timed(lambda: workflow.run(fib.bind(12))) for _ in range(max(2, args.repeat // 2))]
    print(f"{'fib(12)':16} workflow {statistics.median(fibs):.2f} s "
          f"(target < 2.5 s; Ray Workflows 2.47: 20.6 s)   runs {[round(f, 2) for f in fibs]}")
    ray.shutdown()


if __name__ == "__main__":
    main()
