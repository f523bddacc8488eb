"""Simulated hosts: a Ray cluster from the deploy scripts, each node on a "host" of its own.

One machine cannot show another, so each host differs from the others the ways two
machines do:

- its own ``HOME`` (no shared ``~/.ray``, so no shared Ray token), ``TMPDIR`` (no shared
  ``/tmp/ray/ray_current_cluster``) and working directory (no copy of the dags folder);
- its own environment, holding only what the README tells a user to set on that host:
  the database URL, the head's address and the cluster's token, and that host's own
  settings from the README's table;
- its own PID namespace (``unshare``, as root): Ray finds "the raylet on this host" by
  listing processes, so a host must not see another host's raylet. Killing the
  namespace's first process kills the whole host at once, as a machine dies;
- its own hostname (a UTS namespace): a lease names its owner by host and pid, and a pid
  means nothing on another host.

The test process itself sees every namespace below it: a driver run by the tests attaches
to the head node, as a script run on the head host would.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: The "image": the same Python and packages on every host, as the Dockerfile makes them.
BIN = Path(sys.executable).parent
#: Bound of a node's start (``ray start`` under a loaded machine).
NODE_START_SECONDS = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def pid_namespaces() -> bool:
    """Whether this machine lets the tests give a host its own PID namespace."""
    try:
        found = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "hostname", "probe"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if found.returncode != 0:
        warnings.warn(
            "unshare --pid is not permitted here: simulated hosts share one process table",
            stacklevel=2,
        )
    return found.returncode == 0


def generate_token(scratch: Path) -> str:
    """A cluster token made as the README says (``ray get-auth-token --generate``), in an
    administrator's home of its own."""
    home = scratch / "admin"
    home.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [str(BIN / "ray"), "get-auth-token", "--generate"],
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return made.stdout.strip()


@dataclass
class Process:
    """A host's first process: it stands for the host, and killing it kills the host."""

    popen: subprocess.Popen
    log: Path
    namespaced: bool

    @property
    def pid(self) -> int:
        """The pid of the host's first process (inside ``unshare``, when namespaced)."""
        if not self.namespaced:
            return self.popen.pid
        deadline = time.monotonic() + 10
        while True:
            children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
            try:
                found = children.read_text().split()
            except OSError:
                found = []
            if found:
                return int(found[0])
            assert time.monotonic() < deadline, "unshare started no process"
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited ({self.popen.returncode}):\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def signal(self, signum: int) -> None:
        with suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """The host dies: SIGKILL to its first process, and with it to everything on it."""
        if self.popen.poll() is None:
            self.signal(signal.SIGKILL)
            if not self.namespaced:
                with suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=60)


@dataclass
class Host:
    """A simulated machine under ``scratch/name``: ``home``, ``tmp`` and ``work``."""

    name: str
    scratch: Path
    shared: dict[str, str] = field(default_factory=dict)
    process: Process | None = None

    def __post_init__(self) -> None:
        for folder in (self.home, self.tmp, self.work):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self.scratch / self.name

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def environment(self, **settings: str) -> dict[str, str]:
        """A login environment on this host, the shared settings, and ``settings``."""
        return {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            **self.shared,
            **settings,
        }

    def start(self, argv: list[str], log: str, **settings: str) -> Process:
        """Boot the host with ``argv`` as its first process."""
        assert self.process is None or self.process.popen.poll() is not None
        namespaced = pid_namespaces()
        prefix = [
            *("unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child"),
            *("sh", "-c", 'hostname "$0" && exec "$@"', self.name),
        ]
        handle = (self.root / log).open("ab")
        popen = subprocess.Popen(
            [*(prefix if namespaced else []), *argv],
            cwd=self.work,
            env=self.environment(**settings),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        self.process = Process(popen, self.root / log, namespaced)
        return self.process

    def run(
        self, argv: list[str], timeout: float = 120, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the host while it is up (inside its namespace)."""
        assert self.process is not None
        prefix = []
        if self.process.namespaced:
            target = ("nsenter", "--target", str(self.process.pid), "--pid", "--mount", "--uts")
            prefix = [*target, "--"]
        return subprocess.run(
            [*prefix, *argv],
            cwd=self.work,
            env=self.environment(**settings),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


WAIT_FOR_NODES = """
    import json, sys, time
    from executor.cluster import live_nodes, use_token_from_environment
    address, known, timeout = sys.argv[1], set(json.loads(sys.argv[2])), float(sys.argv[3])
    use_token_from_environment(address)
    deadline = time.monotonic() + timeout
    while not live_nodes(address) - known:
        assert time.monotonic() < deadline, live_nodes(address)
        time.sleep(0.5)
    print(json.dumps(sorted(live_nodes(address))))
"""


@dataclass
class Cluster:
    """A head and workers, each a ``Host``; ``shared`` is what every host is told."""

    scratch: Path
    address: str
    token: str
    head: Host
    workers: list[Host]

    @property
    def shared(self) -> dict[str, str]:
        return dict(self.head.shared)

    def host(self, name: str, **shared: str) -> Host:
        """A new host that knows only the cluster's shared settings (and ``shared``)."""
        return Host(name, self.scratch, {**self.shared, **shared})

    def add_worker(self, name: str, cpus: int = 1, **shared: str) -> Host:
        """Boot a worker host from ``deploy/ray-worker.sh`` and wait until it has joined."""
        known = self.live_nodes()
        worker = self.host(name, RAY_HEAD_ADDRESS=self.address, **shared)
        process = worker.start(
            [str(DEPLOY / "ray-worker.sh")], "node.log", RAY_WORKER_CPUS=str(cpus)
        )
        process.wait_for("will now block forever", NODE_START_SECONDS)
        self.workers.append(worker)
        self.live_nodes(known)
        return worker

    def live_nodes(self, known: list[str] | None = None, timeout: float = 90) -> list[str]:
        """The cluster's live nodes, asked from the head host with the token; with
        ``known``, once a node not in it has joined."""
        probe = self.head.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(WAIT_FOR_NODES),
                self.address,
                json.dumps(known if known is not None else ["-"]),
                str(timeout),
            ],
            timeout=timeout + 60,
        )
        assert probe.returncode == 0, probe.stderr[-3000:]
        return json.loads(probe.stdout.strip().splitlines()[-1])

    def driver_env(self, **extra: str) -> dict[str, str]:
        """A driver on the head host: the test process's environment without its own Ray
        settings (the session's Ray turned token auth on with another token), plus the
        cluster's address and token."""
        found = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**found, "RAY_ADDRESS": self.address, "RAY_AUTH_TOKEN": self.token, **extra}

    def drive(self, code: str, *args: str, timeout: float = 240) -> str:
        """Run ``code`` as a driver joined to the cluster; returns its stdout."""
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=self.driver_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout


@contextmanager
def scratch() -> Iterator[Path]:
    """A folder for hosts, with short paths: Ray's unix sockets live under each host's
    TMPDIR, and a socket's path holds at most 107 bytes."""
    found = Path(tempfile.mkdtemp(prefix="gn-", dir="/tmp"))
    try:
        yield found
    finally:
        shutil.rmtree(found, ignore_errors=True)


@contextmanager
def cluster(workers: int = 2, worker_cpus: int = 1, **shared: str) -> Iterator[Cluster]:
    """A head (no CPUs, as deployed) and ``workers`` worker hosts from ``deploy/``, with a
    generated token; every host is killed on exit."""
    with scratch() as folder:
        token = generate_token(folder)
        port = free_port()
        address = f"127.0.0.1:{port}"
        head = Host("head", folder, {"RAY_AUTH_TOKEN": token, **shared})
        found = Cluster(folder, address, token, head, [])
        try:
            process = head.start([str(DEPLOY / "ray-head.sh")], "node.log", RAY_PORT=str(port))
            process.wait_for("will now block forever", NODE_START_SECONDS)
            for index in range(workers):
                found.add_worker(f"worker{index + 1}", worker_cpus)
            yield found
        finally:
            for host in (*found.workers, head):
                host.stop()


@dataclass
class GnomonHost:
    """A host running ``deploy/gnomon.sh`` against a cluster, with its dags folder (the only
    copy of it) in the host's working directory."""

    host: Host
    port: int
    api_token: str
    settings: dict[str, str]

    @classmethod
    def create(
        cls, cluster: Cluster, name: str, database_url: str, dags: str, **settings: str
    ) -> GnomonHost:
        host = cluster.host(name, RAY_ADDRESS=cluster.address, GNOMON_DATABASE_URL=database_url)
        (host.work / "dags").mkdir()
        (host.work / "dags" / "flows.py").write_text(textwrap.dedent(dags))
        port = free_port()
        token = f"api-{name}"
        environment = {
            "GNOMON_DAGS": str(host.work / "dags"),
            "GNOMON_HOST": "127.0.0.1",
            "GNOMON_PORT": str(port),
            "GNOMON_API_TOKEN": token,
            **settings,
        }
        return cls(host, port, token, environment)

    @property
    def process(self) -> Process:
        assert self.host.process is not None
        return self.host.process

    def start(self, log: str = "gnomon.log", timeout: float = NODE_START_SECONDS) -> float:
        """Boot the host; returns the seconds from boot to a healthy ``/healthz``."""
        started = time.monotonic()
        process = self.host.start([str(DEPLOY / "gnomon.sh")], log, **self.settings)
        deadline = started + timeout
        while not self.healthy():
            if process.popen.poll() is not None:
                raise AssertionError(f"gnomon.sh exited:\n{process.text()[-3000:]}")
            assert time.monotonic() < deadline, f"not healthy:\n{process.text()[-3000:]}"
            time.sleep(0.2)
        return time.monotonic() - started

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5):
                return True
        except OSError:
            return False

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.api_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"null")


def main() -> None:
    """Keep a simulated cluster up for measurements, until SIGTERM or Ctrl-C:

    .venv/bin/python -m tests.deploy.hosts [--workers 2] [--worker-cpus 1]

    It prints the address and the token to give a driver (``RAY_AUTH_TOKEN``).
    """
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cpus", type=int, default=1)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with cluster(args.workers, args.worker_cpus) as found:
        print(f"RAY_ADDRESS={found.address} RAY_AUTH_TOKEN={found.token}", flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
