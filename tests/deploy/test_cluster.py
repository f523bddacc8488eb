"""A real two-node Ray cluster started with the deploy scripts, on PostgreSQL.

The head and the worker each run the same script docker-compose would (``deploy/``),
natively, in their own temp dir and process group so the session's Ray is untouched.
Workflows are driven by a subprocess joined through RAY_ADDRESS.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # `ray start` turns token auth on (the token is in ~/.ray); drivers must use it too.
    env["RAY_AUTH_MODE"] = "token"
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.update(extra)
    return env


def _start(script: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(ROOT / "deploy" / script)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def _started(log: Path, process: subprocess.Popen, timeout: float = 150) -> None:
    """``ray start --block`` prints this once its node is up."""
    deadline = time.time() + timeout
    while "will now block forever" not in log.read_text():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"node did not start: {log.read_text()[-2000:]}"
        time.sleep(0.5)


def _drive(code: str, address: str, *args: str, timeout: float = 240) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=_env(RAY_ADDRESS=address),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) and one worker node (1 CPU), joined like compose joins them."""
    temp = Path(tempfile.mkdtemp(prefix="gn-", dir="/tmp"))
    port = _free_port()
    head = _start(
        "ray-head.sh",
        _env(
            RAY_PORT=str(port),
            RAY_HEAD_CPUS="1",
            RAY_TEMP_DIR=str(temp / "head"),
        ),
        temp / "head.log",
    )
    address = f"127.0.0.1:{port}"
    worker = None
    try:
        _started(temp / "head.log", head)
        worker = _start(
            "ray-worker.sh",
            _env(
                RAY_HEAD_ADDRESS=address,
                RAY_WORKER_CPUS="1",
                RAY_TEMP_DIR=str(temp / "worker"),
            ),
            temp / "worker.log",
        )
        _started(temp / "worker.log", worker)
        _drive(
            """
            import time, ray
            ray.init()
            deadline = time.time() + 90
            while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
                assert time.time() < deadline, ray.nodes()
                time.sleep(0.5)
            """,
            address,
        )
        yield {"address": address, "head": head, "worker": worker, "temp": temp}
    finally:
        for process in (worker, head):
            if process is not None:
                _stop(process)


WORKFLOW = """
    import os, sys, time, ray
    from executor import workflow
    database_url, storage, marks, workflow_id, seconds = sys.argv[1:6]
    workflow.init(database_url, storage=storage)

    @ray.remote(max_retries=3)
    def work(i, *upstream):
        with open(os.path.join(marks, f"task-{i}"), "a") as handle:
            handle.write(ray.get_runtime_context().get_node_id() + "\\n")
        time.sleep(float(seconds))
        return i + sum(upstream)

    layer = [work.bind(i) for i in range(4)]
    result = workflow.run(work.bind(100, *layer), workflow_id=workflow_id)
    print(result)
"""


def test_tasks_run_on_both_nodes(cluster, postgresql_url, tmp_path, workflow_id):
    marks = tmp_path / "marks"
    marks.mkdir()
    output = _drive(
        WORKFLOW,
        cluster["address"],
        postgresql_url,
        str(tmp_path / "blobs"),
        str(marks),
        workflow_id,
        "1.0",
    )
    assert output.strip().splitlines()[-1] == str(100 + 0 + 1 + 2 + 3)
    nodes = {line for path in marks.iterdir() for line in path.read_text().split()}
    assert len(nodes) == 2, "the fan-out should use the head and the worker node"


def test_worker_node_killed_mid_workflow(cluster, postgresql_url, tmp_path, workflow_id):
    # Given a workflow whose tasks are spread over both nodes
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(WORKFLOW),
            postgresql_url,
            str(tmp_path / "blobs"),
            str(marks),
            workflow_id,
            "4.0",
        ],
        env=_env(RAY_ADDRESS=cluster["address"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # When the worker node's raylet is SIGKILLed while tasks run there
    worker_raylets = [
        int(pid)
        for pid in subprocess.run(
            ["pgrep", "-g", str(cluster["worker"].pid), "-f", "raylet"],
            capture_output=True,
            text=True,
        ).stdout.split()
    ]
    deadline = time.time() + 120
    while len(list(marks.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert worker_raylets, "the worker node has a raylet to kill"
    for pid in worker_raylets:
        os.kill(pid, signal.SIGKILL)
    out, err = driver.communicate(timeout=300)

    # Then the workflow still completes: Ray retried the lost tasks on the head
    assert driver.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == str(106)
    runs = {path.name: len(path.read_text().split()) for path in marks.iterdir()}
    assert set(runs) == {f"task-{i}" for i in (0, 1, 2, 3, 100)}
    assert all(count <= 2 for count in runs.values()), runs
    assert runs["task-100"] == 1  # started after the kill: ran once
