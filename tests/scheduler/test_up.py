"""``gnomon up`` as a real process: kill -9 it mid-run, start it again, and the run
finishes once, with no second run for its tick; then SIGTERM stops it cleanly.

Each start brings its own local Ray (``--ray-address local``), so the kill takes the
cluster, and the workflow's owner, down with it: only recovery can finish the run.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from executor.status import WorkflowStatus
from executor.store import SqlStore
from scheduler.cli import cli
from scheduler.registry import run_id
from tests.scheduler.processes import GnomonUp, free_port
from tests.waiting import count, eventually, python_path

pytestmark = pytest.mark.slow

#: Bounds for a process start: a local Ray starts in ~10 s here, slower when CPUs are shared.
START_SECONDS = 150

DAGS = """
import os
from datetime import datetime

import ray

import scheduler
from tests.waiting import eventually, mark

MARKS, GO = {marks!r}, {go!r}


@ray.remote
def extract(logical):
    mark(MARKS, "extract")
    return logical


@ray.remote
def load(value):
    mark(MARKS, "load-started")
    eventually(lambda: os.path.exists(GO), timeout=120, what="go")
    mark(MARKS, "load-finished")
    return value + " loaded"


@scheduler.register(name={name!r}, at=datetime.fromisoformat({at!r}))
def crashy(run):
    return load.bind(extract.bind(run.logical_date.isoformat()))
"""


def test_kill_minus_nine_mid_run_then_restart_finishes_the_run_once(tmp_path, marks):
    name = f"crashy_{uuid.uuid4().hex[:8]}"
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    go = tmp_path / "go"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "crashy.py").write_text(
        textwrap.dedent(DAGS.format(marks=str(marks), go=str(go), name=name, at=at.isoformat()))
    )
    (dags / "broken.py").write_text("raise RuntimeError('broken dags file')\n")
    database_url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    port = free_port()
    args = [
        "--dags",
        str(dags),
        "--examples",
        "--database-url",
        database_url,
        "--storage",
        str(tmp_path / "blobs"),
        "--port",
        str(port),
        "--ray-address",
        "local",
    ]
    env = {
        "GNOMON_HOME": str(tmp_path / "home"),
        "GNOMON_RECOVERY_INTERVAL": "2",
        "PYTHONPATH": python_path(),  # the dags file imports tests.waiting
    }
    workflow_id = run_id(name, at)
    store = SqlStore.create(database_url)

    first = GnomonUp(args, tmp_path / "first.log", env)
    second = None
    try:
        first.wait_for("Press Ctrl-C to stop.", START_SECONDS)
        assert "Error: dags file" in first.text()
        assert "RuntimeError: broken dags file" in (first.text())
        eventually(lambda: count(marks, "load-started") >= 1, timeout=60, what="the slow task")

        first.kill_hard()
        assert first.process.returncode == -9
        eventually(
            lambda: store.get_workflow(workflow_id).status == WorkflowStatus.RESUMABLE,
            timeout=30,
            what="the run to read RESUMABLE after the kill",
        )
        go.touch()
        second = GnomonUp(args, tmp_path / "second.log", env)
        second.wait_for("Press Ctrl-C to stop.", START_SECONDS)
        eventually(
            lambda: store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL,
            timeout=90,
            what="the resumed run to finish",
        )

        assert [r.workflow_id for r in store.list_workflows(name=name)] == [workflow_id]
        assert count(marks, "extract") == 1  # checkpointed before the kill: never again
        assert count(marks, "load-finished") >= 1
        listed = CliRunner().invoke(cli, ["schedules", "--json", "--database-url", database_url])
        names = {item["name"] for item in json.loads(listed.stdout)}
        assert {
            name,
            "nightly_etl",
            "health_check",
            "approval_flow",
            "fanout_report",
            "paginated_sync",
        } <= names

        if "Dashboard: http" in second.text():  # the web package is installed: it is served
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
                assert reply.status == 200

        assert second.terminate(timeout=60) == 0
        assert "Stopped." in second.text()
        eventually(
            lambda: not second.leftovers(),
            timeout=20,
            what="no process left in the stopped gnomon's process group",
        )
    finally:
        first.close()
        if second is not None:
            second.close()
        store.dispose()


def _write_token(barrier, tokens) -> None:
    from scheduler.cli.up import api_token

    barrier.wait()
    tokens.put(api_token())


def test_processes_starting_at_once_agree_on_one_api_token(tmp_path, monkeypatch):
    """Two ``gnomon up`` on one machine (replicas) start together: both must come up, with
    the same token, and no half-written file may be read."""
    import multiprocessing

    from scheduler.cli import up

    monkeypatch.delenv("GNOMON_API_TOKEN", raising=False)
    monkeypatch.setattr(up, "TOKEN_FILE", tmp_path / "api_token")
    context = multiprocessing.get_context("fork")
    barrier, tokens = context.Barrier(6), context.Queue()
    starts = [context.Process(target=_write_token, args=(barrier, tokens)) for _ in range(6)]
    for start in starts:
        start.start()
    for start in starts:
        start.join(timeout=60)

    assert [start.exitcode for start in starts] == [0] * 6, "every start came up"
    found = [tokens.get(timeout=5) for _ in starts]
    assert len(set(found)) == 1
    assert found[0] == (tmp_path / "api_token").read_text()
    assert [path.name for path in tmp_path.iterdir()] == ["api_token"], "no drafts are left"
