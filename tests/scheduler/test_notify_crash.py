"""A notification survives a SIGKILL of ``gnomon up`` between the run's outcome and its
delivery, and still arrives exactly once per notifier (a webhook and an SMTP server)."""

from __future__ import annotations

import textwrap
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from executor.status import WorkflowStatus
from executor.store import SqlStore
from scheduler.registry import run_id
from tests.receivers import MailReceiver, WebhookReceiver, free_port
from tests.scheduler.processes import GnomonUp
from tests.waiting import eventually, python_path

START_SECONDS = 120

DAGS = """
from datetime import datetime

import ray

import scheduler


@ray.remote(max_retries=0)
def explode():
    raise ValueError("the run fails")


@scheduler.register(
    name={name!r},
    at=datetime.fromisoformat({at!r}),
    notify=[{hook!r}, "mailto:ops@example.com"],
)
def failing(run):
    return explode.bind()
"""


@pytest.mark.slow
def test_a_kill_between_the_outcome_and_the_delivery_loses_and_repeats_nothing(tmp_path):
    # Given a schedule whose run fails while neither notifier answers yet
    name = f"alerting_{uuid.uuid4().hex[:8]}"
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    hook_port, smtp_port = free_port(), free_port()
    hook = f"webhook+http://127.0.0.1:{hook_port}/ok"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alerting.py").write_text(
        textwrap.dedent(DAGS.format(name=name, at=at.isoformat(), hook=hook))
    )
    database_url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    args = ["--dags", str(dags), "--database-url", database_url, "--storage", str(tmp_path / "b")]
    args += ["--port", str(free_port()), "--ray-address", "local"]
    env = {
        "GNOMON_HOME": str(tmp_path / "home"),
        "PYTHONPATH": python_path(),
        "GNOMON_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?from=gnomon@example.com",
        "GNOMON_NOTIFY_BACKOFF": "0.5",
        "GNOMON_NOTIFY_TIMEOUT": "2",
    }
    workflow_id = run_id(name, at)
    store = SqlStore.create(database_url)
    first = GnomonUp(args, tmp_path / "first.log", env)
    second = webhook = mail = None
    try:
        first.wait_for("Press Ctrl-C to stop.", START_SECONDS)

        def attempted():
            notes = store.list_notifications(workflow_id)
            return len(notes) == 2 and all(n.attempts >= 1 for n in notes) and notes

        eventually(attempted, timeout=60, what="failed first attempts of both notifiers")
        assert store.get_workflow(workflow_id).status == WorkflowStatus.FAILED

        # When gnomon up is killed before any delivery, and the notifiers come up
        first.kill_hard()
        assert all(n.state == "pending" for n in store.list_notifications(workflow_id))
        webhook, mail = WebhookReceiver(hook_port), MailReceiver(smtp_port)
        second = GnomonUp(args, tmp_path / "second.log", env)

        # Then each gets the failure exactly once
        eventually(
            lambda: all(n.state == "delivered" for n in store.list_notifications(workflow_id)),
            timeout=90,
            what="both deliveries after the restart",
        )
        [post] = webhook.at("/ok")
        assert post.body["workflow_id"] == workflow_id
        assert post.body["event"] == "failure"
        [message] = mail.messages
        assert workflow_id in message["Subject"]
    finally:
        for process in (first, second):
            if process is not None:
                process.close()
        for receiver in (webhook, mail):
            if receiver is not None:
                receiver.close()
        store.dispose()
