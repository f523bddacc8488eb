"""Fault: PostgreSQL restarts under a running ``gnomon up`` (dashboard, scheduler, runs).

While the database is away the dashboard says so (503: a page that retries, a banner for
htmx polls, JSON for the API, ``/healthz`` unhealthy), never a 500; once it is back the
same server answers 200 again. The run in flight finishes with every task run once, and
the schedule keeps firing. The server restart drops every connection, other sessions'
too: run this when nothing else uses the server.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import sqlalchemy as sa

from executor.config import StoreConfig
from executor.manager import manager_for
from executor.status import WorkflowStatus
from executor.store import SqlStore
from tests.postgres import restart_postgres
from tests.scheduler.processes import GnomonUp, dags_folder, free_port
from tests.waiting import count, eventually, python_path
from tests.web.conftest import BEARER

START_SECONDS = 120
TOKEN = "db-unavailable-token"

DAGS = """
import time

import ray

import scheduler
from tests.waiting import mark

MARKS = {marks!r}


@ray.remote(num_cpus=0.25)
def step(name, *upstream):
    mark(MARKS, name)
    time.sleep(0.7)
    return 1 + sum(upstream)


@scheduler.register(name={chain!r})
def chain(run):
    node = step.bind("s0")
    for i in range(1, 8):
        node = step.bind(f"s{{i}}", node)
    return node


@scheduler.register(name={tick!r}, interval=1, max_active_runs=5)
def tick(run):
    return step.bind("tick-" + run.logical_date.strftime("%H%M%S"))
"""


@dataclass(frozen=True)
class Answer:
    path: str
    kind: str
    status: int
    body: str
    #: by lower-case name: waitress capitalizes them (``Hx-Retarget``)
    headers: dict[str, str]


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _get(port: int, path: str, kind: str) -> Answer:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if kind == "fragment":
        headers["HX-Request"] = "true"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read().decode()
            return Answer(path, kind, reply.status, body, _lower(reply.headers.items()))
    except urllib.error.HTTPError as error:
        return Answer(path, kind, error.code, error.read().decode(), _lower(error.headers.items()))
    except OSError as error:  # no answer at all (refused, reset, timed out)
        return Answer(path, kind, 0, repr(error), {})


def _poll(port: int, path: str, kind: str, until: threading.Event, seen: list[Answer]) -> None:
    while not until.is_set():
        seen.append(_get(port, path, kind))
        time.sleep(0.05)


def _unavailable(answer: Answer) -> bool:
    """The answer the dashboard gives while the database is away, checked by kind."""
    if answer.status != 503 or answer.headers.get("retry-after") != "5":
        return False
    if answer.kind == "health":
        return json.loads(answer.body) == {"ok": False, "database": "unavailable"}
    if answer.kind == "json":
        return json.loads(answer.body)["error"].startswith("Database unavailable")
    if answer.kind == "fragment":
        return (
            answer.headers.get("hx-retarget") == "#unavailable"
            and 'id="unavailable"' in answer.body
            and "Database unavailable" in answer.body
            and "<html" not in answer.body
        )
    return (
        "<h1>Database unavailable</h1>" in answer.body
        and "retries by itself" in answer.body
        and 'http-equiv="refresh"' in answer.body
    )


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "page"),
        ("/runs/some-run", "page"),
        ("/parts/runs", "fragment"),
        ("/parts/live/some-run", "fragment"),
        ("/api/v1/workflows", "json"),
        ("/api/v1/workflows/some-run", "json"),
        ("/healthz", "health"),
    ],
)
def test_each_kind_of_answer_while_the_database_is_away(
    make_app, monkeypatch, path: str, kind: str
) -> None:
    app = make_app()
    store = app.extensions["gnomon.store"]

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    for method in ("list_workflows", "get_workflow", "load_tasks", "ping"):
        monkeypatch.setattr(store, method, lost)
    headers = {**BEARER, **({"HX-Request": "true"} if kind == "fragment" else {})}
    reply = app.test_client().get(path, headers=headers)
    answer = Answer(
        path, kind, reply.status_code, reply.get_data(as_text=True), _lower(reply.headers.items())
    )
    assert _unavailable(answer), (answer.status, answer.headers, answer.body[-1500:])

    monkeypatch.undo()
    assert app.test_client().get("/healthz").status_code == 200


def test_a_form_sent_while_the_database_is_away_does_not_reload(make_app, monkeypatch) -> None:
    app = make_app()
    store = app.extensions["gnomon.store"]

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "get_workflow", lost)
    reply = app.test_client().post("/runs/some-run/cancel", headers=BEARER)
    assert reply.status_code == 503
    assert "Database unavailable" in reply.get_data(as_text=True)
    assert 'http-equiv="refresh"' not in reply.get_data(as_text=True)


@pytest.mark.slow
@pytest.mark.exclusive
def test_dashboard_through_a_postgres_restart(
    ray_address, scratch_postgresql_url, tmp_path: Path, marks: Path
) -> None:
    # Given gnomon up on its own database, and a run of a slow chain in flight
    suffix = uuid.uuid4().hex[:8]
    chain, tick = f"chain_{suffix}", f"tick_{suffix}"
    dags = dags_folder(tmp_path, DAGS, marks=str(marks), chain=chain, tick=tick)
    port = free_port()
    args = [
        *("--dags", str(dags), "--database-url", scratch_postgresql_url),
        *("--storage", str(tmp_path / "blobs"), "--port", str(port)),
        *("--ray-address", ray_address),
    ]
    env = {
        "GNOMON_HOME": str(tmp_path / "home"),
        "GNOMON_API_TOKEN": TOKEN,
        "PYTHONPATH": python_path(),  # the dags file imports tests.waiting
    }
    store = SqlStore.create(scratch_postgresql_url)
    up = GnomonUp(args, tmp_path / "up.log", env)
    try:
        up.wait_for("Press Ctrl-C to stop.", START_SECONDS)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/schedules/{chain}/trigger",
            method="POST",
            data=b"{}",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            workflow_id = json.loads(reply.read())["workflow_id"]
        probes = [
            ("/", "page"),
            (f"/runs/{workflow_id}", "page"),
            ("/schedules", "page"),
            ("/parts/runs", "fragment"),
            (f"/parts/live/{workflow_id}", "fragment"),
            ("/api/v1/workflows", "json"),
            (f"/api/v1/workflows/{workflow_id}", "json"),
            ("/api/v1/schedules", "json"),
            ("/healthz", "health"),
        ]
        for path, kind in probes:
            answer = _get(port, path, kind)
            assert answer.status == 200, (path, answer.status, answer.body[-2000:])
        eventually(lambda: (marks / "s2").exists(), timeout=60, what="the chain to get going")

        # When PostgreSQL restarts while every part of the dashboard is being polled
        seen: list[Answer] = []
        done = threading.Event()
        pollers = [
            threading.Thread(target=_poll, args=(port, path, kind, done, seen), daemon=True)
            for path, kind in probes
        ]
        for poller in pollers:
            poller.start()
        try:
            restart_postgres()
            restarted_at = time.time()
            time.sleep(1.0)
        finally:
            done.set()
            for poller in pollers:
                poller.join(timeout=40)

        # Then it said "database unavailable" in each form, and never answered a 500
        broken = [(a.path, a.status, a.body[-500:]) for a in seen if a.status not in (200, 503)]
        assert not broken, broken
        unclear = [(a.path, a.body[-500:]) for a in seen if a.status == 503 and not _unavailable(a)]
        assert not unclear, unclear
        kinds = {a.kind for a in seen if a.status == 503}
        assert kinds == {"page", "fragment", "json", "health"}, (
            "no 503 seen for some kinds",
            sorted({(a.path, a.status) for a in seen}),
        )

        # And the same server answers 200 again, without a restart
        for path, kind in probes:
            eventually(
                lambda path=path, kind=kind: _get(port, path, kind).status == 200,
                timeout=30,
                what=f"{path} to answer 200 again",
            )
        assert up.process.poll() is None

        # And the run finished with every task once, and the schedule kept firing
        eventually(
            lambda: store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL,
            timeout=90,
            what="the chain to finish",
        )
        runs = {p.name: count(marks, p.name) for p in marks.glob("s*")}
        assert runs == {f"s{i}": 1 for i in range(8)}, runs
        eventually(
            lambda: any(
                r.created_at > restarted_at and r.status == WorkflowStatus.SUCCESSFUL
                for r in store.list_workflows(name=tick)
            ),
            timeout=30,
            what="a tick after the restart",
        )
        assert up.terminate(timeout=60) == 0, up.text()[-3000:]
    finally:
        up.close()
        store.dispose()
        # The detached manager it left on the session's Ray serves a database about to go.
        ray.kill(manager_for(StoreConfig(scratch_postgresql_url, str(tmp_path / "blobs"))))
