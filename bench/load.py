"""Load on one deployment (issue 6): 3-task workflows through the Python API and the
REST API at once, while an operator keeps the dashboard open.

    .venv/bin/python bench/load.py [--database-url URL] [--workflows 2000] [--in-flight 50]

The deployment is the one docker-compose describes, run natively on loopback: a Ray head
from ``deploy/ray-head.sh`` and ``gnomon up`` joined to it. This process joins the same
cluster and submits half the workflows with ``workflow.run_async``; a REST client submits
the other half with ``POST /api/v1/schedules/load3/trigger``. Each client keeps at most
half of ``--in-flight`` workflows running. A third client reads dashboard pages and API
lists meanwhile and records their latency.

Every task creates a marker file with exclusive create, so a task that ran twice fails
its workflow; the end check counts one marker per task. ``gnomon up``'s resident memory
is read from /proc before and after. Without ``--database-url`` a scratch PostgreSQL
database is used (``$GNOMON_TEST_PG``, see scratch.py). ``--json`` prints the figures as
one JSON object (the test suite reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The deployment's Ray cluster token, given to the head, gnomon up and this process as
# RAY_AUTH_TOKEN (the deploy scripts refuse to start without one); Ray reads the mode once,
# at import.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)

import contextlib

import ray
import requests
from scratch import database, percentile

ROOT = Path(__file__).resolve().parents[1]
GNOMON = str(Path(sys.executable).with_name("gnomon"))
TOKEN = "load-bench-token"
#: The dashboard pages and lists an operator would have open; run pages are added live.
PAGES = ["/", "/?status=RUNNING", "/schedules", "/api/v1/workflows?limit=50"]

DAGS = """
import os

import ray

import scheduler


@ray.remote
def step(marks, tag, depth, x):
    # Exclusive create: a second run of a checkpointed task fails its workflow.
    open(os.path.join(marks, f"{tag}.{depth}"), "x").close()
    return x + 1


@scheduler.register(name="load3", max_active_runs=1000)
def load3(run):
    marks, tag = run.params["marks"], run.params["tag"]
    return step.bind(marks, tag, 3, step.bind(marks, tag, 2, step.bind(marks, tag, 1, 0)))
"""


@ray.remote
def step(marks: str, tag: str, depth: int, x: int) -> int:
    open(os.path.join(marks, f"{tag}.{depth}"), "x").close()
    return x + 1


def three_tasks(marks: str, tag: str):
    return step.bind(marks, tag, 3, step.bind(marks, tag, 2, step.bind(marks, tag, 1, 0)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Deployment:
    """A Ray head and ``gnomon up`` joined to it, each in its own process group."""

    def __init__(self, url: str, scratch: Path) -> None:
        self.scratch = scratch
        self.port = free_port()
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"],
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            GNOMON_DATABASE_URL=url,
            GNOMON_STORAGE=str(scratch / "blobs"),
            GNOMON_API_TOKEN=TOKEN,
        )
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        head_log = self.scratch / "head.log"
        self._spawn(
            [str(ROOT / "deploy" / "ray-head.sh")],
            head_log,
            RAY_PORT=self.address.rsplit(":", 1)[1],
            RAY_HEAD_CPUS="2",
            RAY_TEMP_DIR=str(self.scratch / "ray"),
        )
        self._wait(head_log, "will now block forever", 150)
        dags = self.scratch / "dags"
        dags.mkdir()
        (dags / "load_dags.py").write_text(DAGS)
        self.gnomon_log = self.scratch / "gnomon.log"
        self.gnomon = self._spawn(
            [GNOMON, "up", "--dags", str(dags), "--port", str(self.port)],
            self.gnomon_log,
            RAY_ADDRESS=self.address,
        )
        self._wait(self.gnomon_log, "Press Ctrl-C to stop.", 150)

    def _spawn(self, argv: list[str], log: Path, **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            argv,
            env={**self.env, **env},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def _wait(self, log: Path, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in log.read_text(errors="replace"):
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a process exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {text!r} after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def python_client(count: int, in_flight: int, marks: str, done: list[str], prefix: str) -> None:
    from executor import workflow

    pending: dict[ray.ObjectRef, str] = {}
    for i in range(count):
        if len(pending) >= in_flight:
            ready, _ = ray.wait(list(pending), num_returns=1)
            _collect(ready, pending, done)
        tag = f"{prefix}py-{i}"
        workflow_id = f"load-{tag}"
        ref = workflow.run_async(three_tasks(marks, tag), workflow_id=workflow_id)
        pending[ref] = workflow_id
    _collect(list(pending), pending, done)


def _collect(refs: list, pending: dict, done: list[str]) -> None:
    for ref in refs:
        assert ray.get(ref) == 3
        done.append(pending.pop(ref))


class RestClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(self.base + path, params=params, timeout=30)

    def submit(self, count: int, in_flight: int, marks: str, done: list[str], prefix: str) -> None:
        active: set[str] = set()
        for i in range(count):
            while len(active) >= in_flight:
                self._reap(active, done)
            answer = self.http.post(
                f"{self.base}/api/v1/schedules/load3/trigger",
                json={"params": {"marks": marks, "tag": f"{prefix}rest-{i}"}},
                timeout=30,
            )
            if answer.status_code != 201:
                raise RuntimeError(f"trigger answered {answer.status_code}: {answer.text}")
            active.add(answer.json()["workflow_id"])
        while active:
            self._reap(active, done)

    def _reap(self, active: set[str], done: list[str]) -> None:
        """Runs no longer RUNNING are finished (the end check says how)."""
        time.sleep(0.05)
        answer = self.get("/api/v1/workflows", name="load3", status="RUNNING", limit="500")
        answer.raise_for_status()
        running = {w["id"] for w in answer.json()["workflows"]}
        finished = active - running
        active -= finished
        done.extend(finished)


def watch_dashboard(client: RestClient, stop: threading.Event, runs: list[str]) -> list:
    """Read pages round-robin until ``stop``; (path, status, seconds) per request."""
    samples = []
    turn = 0
    while not stop.is_set():
        pages = PAGES + ([f"/runs/{runs[-1]}", f"/api/v1/workflows/{runs[-1]}"] if runs else [])
        path = pages[turn % len(pages)]
        turn += 1
        began = time.perf_counter()
        status = client.http.get(client.base + path, timeout=30).status_code
        samples.append((path, status, time.perf_counter() - began))
        time.sleep(0.05)
    return samples


def verify(url: str, storage: str, marks: Path, ids: list[str]) -> dict[str, int]:
    from executor.config import StoreConfig, handles

    store = handles(StoreConfig.resolve(url, storage)).store
    statuses: dict[str, int] = {}
    for workflow_id in ids:
        status = store.get_workflow(workflow_id).status.value
        statuses[status] = statuses.get(status, 0) + 1
    return {"markers": len(list(marks.iterdir())), **statuses}


def run(url: str, workflows: int, in_flight: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="gn-load-", dir="/tmp"))
    marks = scratch / "marks"
    marks.mkdir()
    deployment = Deployment(url, scratch)
    try:
        deployment.start()
        ray.init(address=deployment.address, log_to_driver=False)
        from executor import workflow

        workflow.init(url, storage=deployment.env["GNOMON_STORAGE"])
        client = RestClient(f"http://127.0.0.1:{deployment.port}")
        pid = deployment.gnomon.pid
        rss_start = rss_mib(pid)
        # Warm-up: Ray workers, connection pools, template caches.
        warm_py: list[str] = []
        warm_rest: list[str] = []
        python_client(20, 10, str(marks), warm_py, "warm-")
        client.submit(20, 10, str(marks), warm_rest, "warm-")
        rss_before = rss_mib(pid)

        half, share = workflows // 2, max(in_flight // 2, 1)
        py_done: list[str] = []
        rest_done: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()
        samples: list = []

        def guarded(target, *args) -> None:
            try:
                target(*args)
            except BaseException as error:  # reported, and the run fails below
                errors.append(error)

        began = time.perf_counter()
        clients = [
            threading.Thread(
                target=guarded, args=(python_client, half, share, str(marks), py_done, "")
            ),
            threading.Thread(
                target=guarded,
                args=(client.submit, workflows - half, share, str(marks), rest_done, ""),
            ),
        ]
        watcher = threading.Thread(
            target=lambda: samples.extend(watch_dashboard(client, stop, rest_done))
        )
        for thread in [*clients, watcher]:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.perf_counter() - began
        stop.set()
        watcher.join()
        if errors:
            raise errors[0]
        rss_after = rss_mib(pid)
        ids = warm_py + warm_rest + py_done + rest_done
        latencies = [seconds for _, _, seconds in samples]
        return {
            "workflows": len(py_done) + len(rest_done),
            "python_api": len(py_done),
            "rest_api": len(rest_done),
            "seconds": round(elapsed, 1),
            "per_second": round((len(py_done) + len(rest_done)) / elapsed, 1),
            "outcome": verify(url, deployment.env["GNOMON_STORAGE"], marks, ids),
            "expected_markers": 3 * len(ids),
            "dashboard_requests": len(samples),
            "dashboard_errors": sorted({(p, s) for p, s, _ in samples if s != 200}),
            "dashboard_p50_ms": round(1e3 * statistics.median(latencies), 1),
            "dashboard_p95_ms": round(1e3 * percentile(latencies, 0.95), 1),
            "dashboard_max_ms": round(1e3 * max(latencies), 1),
            "rss_mib": {
                "start": round(rss_start, 1),
                "after_warm_up": round(rss_before, 1),
                "after_load": round(rss_after, 1),
            },
        }
    finally:
        if ray.is_initialized():
            ray.shutdown()
        deployment.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.database_url:
        result = run(args.database_url, args.workflows, args.in_flight)
    else:
        with database("postgresql") as url:
            result = run(url, args.workflows, args.in_flight)
    if args.json:
        print(json.dumps(result))
        return
    r = result
    print(
        f"{r['workflows']} three-task workflows ({r['python_api']} Python API, "
        f"{r['rest_api']} REST) in {r['seconds']} s: {r['per_second']}/s\n"
        f"outcome: {r['outcome']}, markers expected: {r['expected_markers']}\n"
        f"dashboard: {r['dashboard_requests']} requests, p50 {r['dashboard_p50_ms']} ms, "
        f"p95 {r['dashboard_p95_ms']} ms, max {r['dashboard_max_ms']} ms, "
        f"non-200: {r['dashboard_errors']}\n"
        f"gnomon up RSS (MiB): {r['rss_mib']}"
    )


if __name__ == "__main__":
    main()
