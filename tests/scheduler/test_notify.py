"""Notifications end to end, on real Ray, SQLite and PostgreSQL: a registered run's outcome
reaches a local HTTP server, a local SMTP server and the schedule's callables exactly once
per event and notifier; a notifier that hangs or fails costs only its own retries."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import ray

from executor.status import WorkflowStatus
from scheduler.errors import InvalidScheduleError
from scheduler.registry import Registry
from tests.waiting import eventually, mark


@ray.remote(max_retries=0)
def explode(text: str) -> str:
    raise ValueError(f"boom: {text}")


@ray.remote(max_retries=1, retry_exceptions=True)
def flaky(marks: str) -> str:
    if mark(marks, "flaky") == 1:
        raise OSError("the first attempt fails")
    return "fine"


def delivered(store, workflow_id, count):
    found = [n for n in store.list_notifications(workflow_id) if n.state == "delivered"]
    return found if len(found) >= count else None


def test_a_failure_reaches_the_webhook_the_mailbox_and_on_failure_once(
    services, registry, name, store, webhook, mail, quick_delivery
):
    called: list = []
    token_url = webhook.url("/ok/secret-token?key=hunter2#failure,success")
    registry.register(
        lambda run: explode.bind(run.params["text"]),
        name=name,
        params={"text": "x"},
        notify=[token_url, "mailto:ops@example.com"],
        on_failure=called.append,
    )
    service = services(registry)

    workflow_id = service.trigger(name, {"text": "y"})

    notes = eventually(lambda: delivered(store, workflow_id, 3), what="three deliveries")
    assert store.get_workflow(workflow_id).status == WorkflowStatus.FAILED
    assert sorted(n.event for n in notes) == ["failure"] * 3
    [post] = webhook.at("/ok/secret-token?key=hunter2")
    assert post.body["event"] == "failure"
    assert post.body["workflow_id"] == workflow_id
    assert post.body["status"] == "FAILED"
    assert "ValueError: boom: y" in post.body["error"]
    assert post.body["logical_date"] is not None
    assert post.headers["Idempotency-Key"] == post.body["notification_id"]
    [message] = mail.about(workflow_id)
    assert message["To"] == "ops@example.com"
    assert workflow_id in message["Subject"]
    assert "failed" in message["Subject"]
    [run] = called
    assert (run.workflow_id, run.event, run.status) == (workflow_id, "failure", "FAILED")
    assert "boom: y" in run.error
    # The secret never shows: the webhook's path past its first segment and query values.
    shown = {n.target: n for n in notes}
    assert token_url in shown
    from executor.store.records import mask_target

    assert "secret-token" not in mask_target(token_url)
    assert "hunter2" not in mask_target(token_url)


def test_success_and_a_retried_task_call_on_success_and_on_retry(
    services, registry, name, store, marks, webhook, quick_delivery
):
    events: list = []
    lock = threading.Lock()

    def record(run):
        with lock:
            events.append((run.event, run.task_id))

    registry.register(
        lambda run: flaky.bind(str(marks)),
        name=name,
        notify=[webhook.url("/ok#success,retry")],
        on_success=record,
        on_retry=record,
    )
    service = services(registry)

    workflow_id = service.trigger(name)

    eventually(lambda: delivered(store, workflow_id, 4), what="success and retry, twice each")
    assert store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL
    assert sorted(event for event, _ in events) == ["retry", "success"]
    retry_task = next(task for event, task in events if event == "retry")
    assert retry_task in {task.task_id for task in store.load_tasks(workflow_id)}
    assert sorted(item.body["event"] for item in webhook.at("/ok")) == ["retry", "success"]


def test_a_hanging_and_a_failing_notifier_cost_only_their_own_retries(
    services, registry, name, store, webhook, quick_delivery
):
    registry.register(
        lambda run: explode.bind("z"),
        name=name,
        notify=[webhook.url("/hang"), webhook.url("/fail"), webhook.url("/ok")],
    )
    service = services(registry)

    workflow_id = service.trigger(name)

    eventually(lambda: webhook.at("/ok"), timeout=15, what="the good notifier's message")

    def retried():
        notes = {n.target: n for n in store.list_notifications(workflow_id)}
        failing, hanging = notes[webhook.url("/fail")], notes[webhook.url("/hang")]
        return failing.attempts >= 2 and hanging.attempts >= 1 and (failing, hanging)

    failing, hanging = eventually(retried, timeout=30, what="retries of the bad notifiers")
    assert failing.state == "pending"
    assert failing.last_error.startswith("HTTP 500 from webhook+http://127.0.0.1")
    assert "did not answer" in hanging.last_error
    assert len(webhook.at("/ok")) == 1


def test_a_paused_schedules_tick_that_never_started_misses_its_deadline(
    services, registry, name, store, webhook
):
    registry.register(
        lambda run: explode.bind("never"),
        name=name,
        interval=2,
        paused=True,
        deadline=timedelta(seconds=1),
        notify=[webhook.url("/ok")],
    )
    services(registry)

    post = eventually(lambda: webhook.at("/ok"), timeout=20, what="a deadline_missed event")[0]

    assert post.body["event"] == "deadline_missed"
    assert post.body["status"] is None  # no run started
    workflow_id = post.body["workflow_id"]
    assert workflow_id.startswith(f"{name}@")
    assert store.list_workflows(name=name) == []
    [note] = eventually(lambda: delivered(store, workflow_id, 1), what="its delivery")
    assert note.event == "deadline_missed"


def test_a_late_run_is_marked_late(services, registry, name, store, webhook):
    @ray.remote
    def slow() -> str:
        import time

        time.sleep(3)
        return "late"

    registry.register(
        lambda run: slow.bind(),
        name=name,
        deadline_after_start=1,
        notify=[webhook.url("/ok")],
    )
    service = services(registry)

    workflow_id = service.trigger(name)

    post = eventually(lambda: webhook.at("/ok"), timeout=20, what="deadline_missed")[0]
    assert post.body["event"] == "deadline_missed"
    assert post.body["workflow_id"] == workflow_id
    assert post.body["status"] in ("RUNNING", "PENDING")
    record = eventually(
        lambda: (r := store.get_workflow(workflow_id)).status == WorkflowStatus.SUCCESSFUL and r,
        what="the run's end",
    )
    assert record.late(now=record.ended_at) is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"notify": ["ftp://example.com/x"]}, "Unknown notifier scheme 'ftp'"),
        ({"notify": ["webhook+https://h/p#oops"]}, "Unknown notification event(s) 'oops'"),
        ({"notify": ["mailto:nobody"]}, "needs an address"),
        ({"deadline": timedelta(0)}, "deadline must be a positive"),
        ({"deadline_after_start": -5}, "deadline_after_start must be a positive"),
        ({"on_failure": "not callable"}, "on_failure must be a callable"),
    ],
)
def test_bad_alert_options_are_refused_in_one_line(options, message):
    with pytest.raises(InvalidScheduleError) as refused:
        Registry().register(lambda run: None, name="bad", **options)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_secret_in_a_refused_url_is_masked():
    with pytest.raises(InvalidScheduleError) as refused:
        Registry().register(lambda run: None, name="bad", notify=["gopher://u:pw@h/a/secret"])
    assert "secret" not in str(refused.value)
    assert "pw" not in str(refused.value)
