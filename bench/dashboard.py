"""Dashboard response times at scale: 100,000 runs and 1,000,000 tasks (issue 5).

    .venv/bin/python bench/dashboard.py                                   # SQLite in a temp dir
    .venv/bin/python bench/dashboard.py --database-url postgresql://gnomon@127.0.0.1/gnomon_bench
    .venv/bin/python bench/dashboard.py --database-url sqlite:////tmp/bench.db  # reruns reuse it

The fill goes through the store, one ``create_workflow`` (the run and its tasks in one
transaction) and one ``finish`` per run, from a few threads on PostgreSQL. One run has
2,000 tasks, all started and finished with previews. Then each page is requested
``--requests`` times (after warm-ups) through the Flask test client, or through waitress
on loopback with ``--http``, and the p50/p95/max server times are printed against the
150 ms target. The store calls behind the slow pages are timed too, to show where the
time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Python puts bench/ first on the path; keep it from shadowing the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from executor.config import StoreConfig, handles  # noqa: E402
from executor.status import WorkflowStatus  # noqa: E402
from executor.store import NewTask, SqlStore  # noqa: E402
from executor.store.migrate import upgrade  # noqa: E402
from web import create_app, serve  # noqa: E402
from web.listing import encode_cursor  # noqa: E402

TARGET_MS = 150.0
TOKEN = "bench-token"
BIG_RUN = "bench-big-run"
NAMES = [f"bench_{i:02d}" for i in range(20)]
#: Out of every 100 runs: 90 SUCCESSFUL, 6 FAILED, 2 CANCELED, 1 RUNNING, 1 PENDING.
STATUS_CYCLE = (
    [WorkflowStatus.SUCCESSFUL] * 90
    + [WorkflowStatus.FAILED] * 6
    + [WorkflowStatus.CANCELED] * 2
    + [WorkflowStatus.RUNNING, WorkflowStatus.PENDING]
)
ERROR = 'Traceback (most recent call last):\n  File "etl.py", line 3\nValueError: bad row'


def _chain(count: int, prefix: str = "bench.step") -> list[NewTask]:
    ids = [f"{prefix}_{i}" for i in range(count)]
    return [NewTask(task_id, prefix, ids[i - 1 : i], {}) for i, task_id in enumerate(ids)]


def _fill_one(store: SqlStore, index: int, tasks: int) -> None:
    workflow_id = f"bench-{index:06d}"
    status = STATUS_CYCLE[index % len(STATUS_CYCLE)]
    name = NAMES[index % len(NAMES)]
    rows = _chain(tasks)
    store.create_workflow(
        workflow_id,
        name,
        None,
        None,
        rows[-1].task_id,
        rows,
        {"i": index},
        trigger="schedule" if index % 3 else "manual",
    )
    if status == WorkflowStatus.PENDING:
        return
    if status == WorkflowStatus.RUNNING:
        store.acquire(workflow_id, f"bench/{os.getpid()}/{index}")
        return
    store.finish(
        workflow_id,
        None,
        status,
        output_preview=repr({"rows": index}),
        error=ERROR if status == WorkflowStatus.FAILED else None,
    )


def _fill_big_run(store: SqlStore, tasks: int) -> None:
    rows = [NewTask(f"etl.extract_{i}", "etl.extract", [], {}) for i in range(tasks // 2)]
    rows += [
        NewTask(f"etl.load_{i}", "etl.load", [f"etl.extract_{i}"], {})
        for i in range(tasks - tasks // 2 - 1)
    ]
    rows.append(NewTask("etl.report", "etl.report", [], {}))
    store.create_workflow(BIG_RUN, "bench_big", None, None, "etl.report", rows, {})
    store.acquire(BIG_RUN, f"bench/{os.getpid()}/big")
    started = time.time() - 600
    for i, row in enumerate(rows):
        store.tasks_started(BIG_RUN, [(row.task_id, started + i * 0.2)])
        store.task_finished(
            BIG_RUN, row.task_id, None, repr([row.task_id] * 3), started + i * 0.2, 0
        )
    store.finish(BIG_RUN, None, WorkflowStatus.SUCCESSFUL, output_preview="'report'")


def fill(store: SqlStore, workflows: int, tasks: int, big: int, threads: int) -> None:
    """``workflows`` runs holding ``tasks`` tasks in all, one of them with ``big`` tasks."""
    if store.list_workflows(name="bench_big", limit=1):
        print("The database holds a filled bench already: reusing it")
        return
    spread = tasks - big
    runs = workflows - 1
    started = time.perf_counter()
    _fill_big_run(store, big)

    def one(index: int) -> None:
        count = (spread * (index + 1)) // runs - (spread * index) // runs
        _fill_one(store, index, max(count, 1))

    done = 0
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, range(runs), chunksize=256):
            done += 1
            if done % 10_000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:,} runs written ({rate:,.0f}/s)", flush=True)
    print(f"Filled {workflows:,} runs and {tasks:,} tasks in {time.perf_counter() - started:.0f} s")


def measure(call: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def report(label: str, times: list[float]) -> bool:
    times = sorted(times)
    p95 = times[max(round(0.95 * len(times)) - 1, 0)]
    ok = p95 < TARGET_MS
    print(
        f"  {label:<44} p50 {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {times[-1]:7.1f} ms   {'ok' if ok else 'OVER'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--big-run", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="fill threads (default: 1 on SQLite, which has one writer; 4 on PostgreSQL)",
    )
    parser.add_argument("--http", action="store_true", help="through waitress on loopback")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="gnomon-bench-")
    url = args.database_url or f"sqlite:///{scratch}/bench.db"
    config = StoreConfig.resolve(url, f"{scratch}/blobs")
    store = handles(config).store
    upgrade(store)
    threads = args.threads or (1 if url.startswith("sqlite") else 4)
    print(f"Database {store.engine.url.render_as_string(hide_password=True)}")
    fill(store, args.workflows, args.tasks, args.big_run, threads)

    app = create_app({"DATABASE_URL": url, "STORAGE": config.storage, "API_TOKEN": TOKEN})
    deep_record = store.get_workflow(f"bench-{args.workflows // 10:06d}")
    deep = encode_cursor(deep_record)
    pages = {
        "runs page, first": "/",
        "runs page, deep (cursor ~90% down)": f"/?cursor={deep}",
        "runs rows, live update": "/parts/runs",
        "runs filtered by status FAILED": "/?status=FAILED",
        "runs filtered by status CANCELED": "/?status=CANCELED",
        "runs filtered by status SUCCESSFUL": "/?status=SUCCESSFUL",
        "runs filtered by name": f"/?name={NAMES[3]}",
        "runs searched by id prefix": "/?q=bench-0999",
        f"run page, {args.big_run:,} tasks": f"/runs/{BIG_RUN}",
        "  its live update": f"/parts/live/{BIG_RUN}",
        "  its task table": f"/parts/tasks/{BIG_RUN}",
        "  its graph (JSON)": f"/parts/graph/{BIG_RUN}",
        "JSON list": "/api/v1/workflows",
        "JSON list, status FAILED": "/api/v1/workflows?status=FAILED",
        "JSON list, limit 500": "/api/v1/workflows?limit=500",
        f"JSON run, {args.big_run:,} tasks": f"/api/v1/workflows/{BIG_RUN}",
    }
    server = None
    if args.http:
        server = serve(app, "127.0.0.1", 0)
        base = server.url.rstrip("/")

        def fetch(path: str) -> Callable[[], object]:
            request = urllib.request.Request(
                base + path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            return lambda: urllib.request.urlopen(request).read()
    else:
        client = app.test_client()

        def fetch(path: str) -> Callable[[], object]:
            def get() -> object:
                response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
                assert response.status_code == 200, (path, response.status_code)
                return response.data

            return get

    print(
        f"Server response times over {args.requests} requests "
        f"({'waitress on loopback' if args.http else 'Flask test client'}):"
    )
    results = [report(label, measure(fetch(path), args.requests)) for label, path in pages.items()]

    print("Store calls behind them:")
    report("list_workflows(limit=51)", measure(lambda: store.list_workflows(limit=51), 20))
    before = (deep_record.created_at, deep_record.workflow_id)
    report(
        "list_workflows(limit=51, before=deep)",
        measure(lambda: store.list_workflows(limit=51, before=before), 20),
    )
    for status in (WorkflowStatus.FAILED, WorkflowStatus.SUCCESSFUL, WorkflowStatus.RUNNING):
        report(
            f"list_workflows(statuses=[{status.value}], limit=51)",
            measure(lambda s=status: store.list_workflows(statuses=[s], limit=51), 10),
        )
    report(
        "list_workflows(id_prefix='bench-0999', limit=51)",
        measure(lambda: store.list_workflows(id_prefix="bench-0999", limit=51), 20),
    )
    report(f"load_tasks({args.big_run:,} tasks)", measure(lambda: store.load_tasks(BIG_RUN), 20))
    report("count_by_status()", measure(store.count_by_status, 10))
    if server is not None:
        server.close()
    print("All pages under the target" if all(results) else "Some pages are OVER the target")


if __name__ == "__main__":
    main()
