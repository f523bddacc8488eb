"""Joining Ray goes right or fails in one line, fast (``executor/cluster.py``).

Each ``gnomon up`` runs on a simulated host of its own (``tests/deploy/hosts.py``), on a
SQLite database in that host's home:

- with no address, it starts a local Ray even when the host's
  ``$TMPDIR/ray/ray_current_cluster`` names a dead cluster (it used to join that address
  and retry forever);
- an address that refuses, or does not answer, ends it within 10 s of asking, with one
  line that names the address and what to check;
- a missing, wrong or unreadable token is one line too, and the deploy scripts refuse to
  start a node without a token unless ``RAY_AUTH_MODE=disabled`` says so;
- with ``RAY_AUTH_MODE=disabled`` everywhere, a deployment runs without a token.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cluster import CONNECT_TIMEOUT
from tests.deploy.hosts import DEPLOY, Cluster, GnomonHost, Host, free_port
from tests.deploy.hosts import cluster as start_cluster

pytestmark = pytest.mark.slow

#: What the issue allows a bad address, from the start of ``gnomon up`` to its exit.
REFUSED_SECONDS = 10
#: Python, Ray's and Gnomon's imports and a SQLite migration before Ray is asked (a loaded
#: machine's figure), on top of ``CONNECT_TIMEOUT`` for an address that does not answer.
STARTUP_SECONDS = 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head alone (token auth on): these tests only join it, or fail to."""
    with start_cluster(workers=0) as found:
        yield found


def _gnomon_up(host: Host, *args: str, timeout: float = 60, **settings: str):
    """``gnomon up`` run to its end on ``host``; (exit code, stdout, stderr, seconds)."""
    database = f"sqlite:///{host.home}/gnomon.db"
    started = time.monotonic()
    result = subprocess.run(
        ["gnomon", "up", "--database-url", database, "--port", str(free_port()), *args],
        cwd=host.work,
        env=host.environment(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    return lines[0]


def test_up_without_an_address_starts_a_local_ray_despite_a_stale_cluster(hosts_root: Path):
    # Given a host whose last `ray start` cluster is dead (its address file is left)
    host = Host("stale", hosts_root)
    dead = f"127.0.0.1:{free_port()}"
    (host.tmp / "ray").mkdir()
    (host.tmp / "ray" / "ray_current_cluster").write_text(dead)

    # When gnomon up starts there with no address
    process = host.start(
        ["gnomon", "up", "--database-url", f"sqlite:///{host.home}/gnomon.db", "--port", "0"],
        "up.log",
    )
    try:
        # Then it starts a Ray of its own and serves
        process.wait_for("Press Ctrl-C to stop.", 150)
        assert dead not in process.text()
        process.signal(15)
        assert process.popen.wait(timeout=30) == 0, process.text()[-3000:]
    finally:
        host.stop()


def test_an_address_that_refuses_ends_up_in_one_line_within_10_s(tmp_path: Path):
    host = Host("refused", tmp_path)
    code, out, err, seconds = _gnomon_up(host, "--ray-address", "127.0.0.1:1")
    line = _one_line(err)
    assert code == 1
    assert "Press Ctrl-C" not in out
    assert "127.0.0.1:1" in line, line
    assert "head node is up" in line, line
    assert seconds < REFUSED_SECONDS, seconds


def test_an_address_that_does_not_answer_ends_up_in_one_line(tmp_path: Path):
    # A port that accepts connections and never says anything
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        code, out, err, seconds = _gnomon_up(Host("silent", tmp_path), "--ray-address", address)
    line = _one_line(err)
    assert code == 1
    assert "Press Ctrl-C" not in out
    assert address in line, line
    assert f"did not answer within {CONNECT_TIMEOUT:g} s" in line, line
    assert seconds < CONNECT_TIMEOUT + STARTUP_SECONDS, seconds


def test_a_missing_wrong_or_unreadable_token_is_one_line(cluster: Cluster, tmp_path: Path):
    host = Host("tokens", tmp_path)
    address = ("--ray-address", cluster.address)

    code, _, err, _ = _gnomon_up(host, *address)
    assert code == 1, err
    assert "requires a token" in _one_line(err), err
    assert cluster.address in err, err

    code, _, err, _ = _gnomon_up(host, *address, RAY_AUTH_TOKEN="not-the-token")
    assert code == 1, err
    assert "refused this host's token" in _one_line(err), err

    missing = host.home / "no-such-token"
    code, _, err, _ = _gnomon_up(host, *address, RAY_AUTH_TOKEN_PATH=str(missing))
    assert code == 1, err
    assert f"RAY_AUTH_TOKEN_PATH names {missing}" in _one_line(err), err


def test_the_deploy_scripts_refuse_to_start_a_node_without_the_token(tmp_path: Path):
    host = Host("scripts", tmp_path)
    for script, settings in (
        ("ray-head.sh", {}),
        ("ray-worker.sh", {"RAY_HEAD_ADDRESS": "127.0.0.1:1"}),
        ("gnomon.sh", {"RAY_ADDRESS": "127.0.0.1:1", "GNOMON_DATABASE_URL": "sqlite://"}),
        ("ray-worker.sh", {"RAY_HEAD_ADDRESS": "127.0.0.1:1", "RAY_AUTH_TOKEN_PATH": "/nope"}),
    ):
        ran = subprocess.run(
            [str(DEPLOY / script)],
            env=host.environment(**settings),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ran.returncode == 2, (script, ran.stderr)
        [line] = ran.stderr.strip().splitlines()
        assert line.startswith(f"{script}: "), line
        assert "RAY_AUTH_TOKEN" in line, line


DAGS = """
import ray

import scheduler


@ray.remote
def hello(name):
    return f"hello {name}"


@scheduler.register(name="hello")
def greet(run):
    return hello.bind("disabled")
"""


def test_with_auth_disabled_everywhere_a_deployment_runs_without_a_token(hosts_root: Path):
    # Given a head and gnomon up, each told RAY_AUTH_MODE=disabled and no token
    scratch = hosts_root
    port = free_port()
    disabled = {"RAY_AUTH_MODE": "disabled"}
    head = Host("head", scratch, dict(disabled))
    open_cluster = Cluster(scratch, f"127.0.0.1:{port}", "", head, [])
    gnomon = GnomonHost.create(
        open_cluster,
        f"gnomon-{uuid.uuid4().hex[:6]}",
        f"sqlite:///{scratch}/shared.db",
        DAGS,
    )
    try:
        head.start([str(DEPLOY / "ray-head.sh")], "node.log", RAY_PORT=str(port), RAY_HEAD_CPUS="1")
        head.process.wait_for("will now block forever", 150)  # type: ignore[union-attr]
        gnomon.start()

        # Then a run goes through
        workflow_id = gnomon.api("/api/v1/schedules/hello/trigger", "POST", {})["workflow_id"]
        deadline = time.monotonic() + 90
        while (found := gnomon.api(f"/api/v1/workflows/{workflow_id}"))["status"] != "SUCCESSFUL":
            log = gnomon.process.text()[-3000:]
            assert found["status"] not in ("FAILED", "CANCELED"), (found, log)
            assert time.monotonic() < deadline, (found, log)
            time.sleep(0.5)
        assert found["output_preview"] == "'hello disabled'"
    finally:
        gnomon.host.stop()
        head.stop()
