"""Web fixtures: an app on the test database, clients with and without the token, and runs
seeded straight into the store (fast, no Ray). The scheduler's fixtures come from
``tests/conftest.py``."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from executor.status import TaskStatus, WorkflowStatus
from executor.store import NewTask, SqlStore
from executor.store.leases import HOSTNAME, owner_id
from web import create_app

TOKEN = "test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def make_app(database_url: str, blob_root: Path) -> Callable[..., Flask]:
    def make(**config: Any) -> Flask:
        settings = {
            "DATABASE_URL": database_url,
            "STORAGE": str(blob_root),
            "API_TOKEN": TOKEN,
            "SECRET_KEY": "web-tests",
            "TESTING": True,
            **config,
        }
        return create_app(settings)

    return make


@pytest.fixture
def app(workflow, make_app: Callable[..., Flask]) -> Flask:
    """The dashboard on the parametrised database, in a process with Ray."""
    return make_app()


@pytest.fixture
def api(app: Flask) -> FlaskClient:
    """A client that sends the token as a Bearer header, like a script would."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = BEARER["Authorization"]
    return client


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    """A client logged in through the token form, holding the session cookie."""
    client = app.test_client()
    response = client.get("/login")
    response = client.post("/login", data={"token": TOKEN, "csrf_token": csrf_of(response.text)})
    assert response.status_code == 302
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def dead_owner() -> str:
    """An owner id on this host whose process has exited: its runs read RESUMABLE."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{HOSTNAME}/{process.pid}/gone"


def seed(
    store: SqlStore,
    workflow_id: str,
    status: WorkflowStatus = WorkflowStatus.SUCCESSFUL,
    *,
    tasks: int = 3,
    workflow_name: str = "seeded",
    preview: str = "'done'",
    error: str = "Traceback (most recent call last):\nValueError: boom",
    trigger: str = "manual",
    metadata: dict[str, Any] | None = None,
) -> None:
    """A run written straight into the store in ``status``: a chain of ``tasks`` tasks.

    Seeded runs have no stored graph, so they can be read, listed, refused and deleted,
    but not resumed.
    """
    ids = [f"tests.fake.step_{i}" for i in range(tasks)]
    rows = [
        NewTask(task_id, "tests.fake.step", ids[i - 1 : i], {}) for i, task_id in enumerate(ids)
    ]
    store.create_workflow(
        workflow_id, workflow_name, None, None, ids[-1], rows, metadata or {}, trigger
    )
    if status == WorkflowStatus.PENDING:
        return
    owner = dead_owner() if status == WorkflowStatus.RESUMABLE else owner_id("web-tests")
    assert store.acquire(workflow_id, owner)
    now = time.time()
    for task_id in ids:  # one at a time: several in one call fail on SQLAlchemy 2.1
        store.tasks_started(workflow_id, [(task_id, now - 2)])
    if status in (WorkflowStatus.RUNNING, WorkflowStatus.RESUMABLE):
        return
    for task_id in ids[:-1]:
        store.task_finished(workflow_id, task_id, None, preview, now - 2, 0)
    if status == WorkflowStatus.SUCCESSFUL:
        store.task_finished(workflow_id, ids[-1], None, preview, now - 1, 0)
        store.finish(workflow_id, owner, status, output_preview=preview)
    elif status == WorkflowStatus.FAILED:
        store.task_failed(workflow_id, ids[-1], error, now - 1, 0)
        store.finish(workflow_id, owner, status, error=error)
    else:
        store.set_task_status(workflow_id, [ids[-1]], TaskStatus.CANCELED)
        store.finish(workflow_id, owner, status)


@pytest.fixture
def released(tmp_path: Path) -> Iterator[Path]:
    """A file path the gated test workflows wait for; created at teardown so no run hangs."""
    path = tmp_path / "release"
    yield path
    path.touch()
