"""A native Ray cluster from the deploy scripts: the head and the workers each run the
script docker-compose would (``deploy/``), in their own temp dir and process group, so
the session's Ray is untouched and teardown is one ``killpg`` each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where ``ray start`` records the last cluster; a stale one would capture ``ray.init()``.
RAY_ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    """The environment of a deploy script or a driver: no inherited ``RAY_*`` settings."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # `ray start` turns token auth on (the token is in ~/.ray); drivers must use it too.
    found["RAY_AUTH_MODE"] = "token"
    found["PATH"] = f"{Path(sys.executable).parent}:{found['PATH']}"
    found.update(extra)
    return found


def start(script: str, environment: dict[str, str], log: Path) -> subprocess.Popen:
    """Run ``deploy/<script>`` in a session of its own (its pid is its process group)."""
    return subprocess.Popen(
        [str(ROOT / "deploy" / script)],
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    """SIGKILL the script's whole process group (raylet, GCS, workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def started(log: Path, process: subprocess.Popen, timeout: float = 150) -> None:
    """``ray start --block`` prints this once its node is up."""
    deadline = time.time() + timeout
    while "will now block forever" not in log.read_text():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"node did not start: {log.read_text()[-2000:]}"
        time.sleep(0.5)


def drive(code: str, address: str, *args: str, timeout: float = 240) -> str:
    """Run ``code`` as a driver joined to the cluster; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env(RAY_ADDRESS=address),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@dataclass
class Cluster:
    address: str
    head: subprocess.Popen
    worker: subprocess.Popen
    temp: Path


@contextmanager
def two_node_cluster(head_cpus: int = 1, worker_cpus: int = 1) -> Iterator[Cluster]:
    """A head and one worker node, joined like compose joins them; killed on exit."""
    temp = Path(tempfile.mkdtemp(prefix="gn-", dir="/tmp"))
    had_address_file = RAY_ADDRESS_FILE.exists()
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start(
        "ray-head.sh",
        env(RAY_PORT=str(port), RAY_HEAD_CPUS=str(head_cpus), RAY_TEMP_DIR=str(temp / "head")),
        temp / "head.log",
    )
    worker = None
    try:
        started(temp / "head.log", head)
        worker = start(
            "ray-worker.sh",
            env(
                RAY_HEAD_ADDRESS=address,
                RAY_WORKER_CPUS=str(worker_cpus),
                RAY_TEMP_DIR=str(temp / "worker"),
            ),
            temp / "worker.log",
        )
        started(temp / "worker.log", worker)
        drive(
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
        yield Cluster(address, head, worker, temp)
    finally:
        for process in (worker, head):
            if process is not None:
                stop(process)
        _forget_address(address, had_address_file)


def _forget_address(address: str, had_address_file: bool) -> None:
    """Remove the address file only if this cluster wrote it (it normally goes to the
    node's temp dir): a stale address would make a later ``ray.init()`` join a dead
    cluster."""
    if had_address_file:
        return
    try:
        if RAY_ADDRESS_FILE.read_text().strip() == address:
            RAY_ADDRESS_FILE.unlink()
    except FileNotFoundError:
        pass
