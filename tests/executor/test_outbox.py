"""The notification outbox in the store, on SQLite and PostgreSQL: a registered run's
outcome writes its events with itself, once per (run, event, notifier); deliveries are
claimed under a lease and retried or given up."""

from __future__ import annotations

import pytest

from executor.status import WorkflowStatus
from executor.store import Checkpoint, NewTask
from executor.store.records import NotifyRoute, RunAlerts

HOOK = "webhook+http://127.0.0.1:9/hook?token=s3cret"
MAIL = "mailto:ops@example.com"
ROUTES = RunAlerts(
    routes=(
        NotifyRoute("failure", HOOK),
        NotifyRoute("failure", MAIL),
        NotifyRoute("success", HOOK),
        NotifyRoute("retry", HOOK),
    ),
    deadline_at=123.0,
)


def _create(store, workflow_id, alerts=ROUTES, owner="me"):
    tasks = [NewTask("a", "m.a", [], {}), NewTask("b", "m.b", ["a"], {})]
    assert store.create_workflow(
        workflow_id, "flow", b"g", None, "b", tasks, {}, owner=owner, alerts=alerts
    )


def _events(store, workflow_id):
    return sorted((n.event, n.target, n.state) for n in store.list_notifications(workflow_id))


def _value(data: bytes) -> Checkpoint:
    return Checkpoint(kind="value", data=data, blob=None, size=len(data))


def test_the_output_tasks_finish_writes_the_success_event_with_the_outcome(store, workflow_id):
    _create(store, workflow_id)
    store.task_finished(workflow_id, "a", _value(b"a"), "'a'", 1.0, 1, graph_output=False)

    assert store.task_finished(workflow_id, "b", _value(b"b"), "'b'", 1.0, 1).outcome is True
    # Ray runs the call again: the checkpoint is there, nothing more is written.
    assert store.task_finished(workflow_id, "b", _value(b"b"), "'b'", 1.0, 1).outcome is False

    assert _events(store, workflow_id) == [("success", HOOK, "pending")]
    record = store.get_workflow(workflow_id)
    assert record.deadline_at == 123.0
    assert record.late(now=1e12) is True  # succeeded after its deadline


def test_a_success_with_a_log_takes_the_transaction_path_and_writes_it_too(store, workflow_id):
    _create(store, workflow_id)

    store.task_finished(workflow_id, "b", _value(b"b"), "'b'", 1.0, 1, log=(1.0, "printed\n"))

    assert _events(store, workflow_id) == [("success", HOOK, "pending")]


def test_failures_write_one_event_per_notifier_and_cancels_none(store, workflow_id):
    failed, canceled, stolen = workflow_id, f"{workflow_id}-c", f"{workflow_id}-s"
    for each in (failed, canceled, stolen):
        _create(store, each)

    store.finish_many(
        "me",
        [
            (failed, WorkflowStatus.FAILED, None, "ValueError: boom"),
            (canceled, WorkflowStatus.CANCELED, None, None),
        ],
    )
    store.finish_many("someone else", [(stolen, WorkflowStatus.FAILED, None, "no")])

    assert _events(store, failed) == [("failure", MAIL, "pending"), ("failure", HOOK, "pending")]
    assert {n.error for n in store.list_notifications(failed)} == {"ValueError: boom"}
    assert _events(store, canceled) == []
    assert _events(store, stolen) == []


def test_a_resumed_run_that_fails_again_notifies_again(store, workflow_id, monkeypatch):
    _create(store, workflow_id, alerts=RunAlerts((NotifyRoute("failure", HOOK),)))
    assert store.finish(workflow_id, "me", WorkflowStatus.FAILED, error="first")
    assert store.finish(workflow_id, None, WorkflowStatus.FAILED, error="replayed")
    assert len(store.list_notifications(workflow_id)) == 1  # same start: the same event

    # A later start (the session's store is shared: its own clock comes back after).
    monkeypatch.setattr(store, "clock", lambda: 10**10)
    assert store.acquire(workflow_id, "me")
    assert store.finish(workflow_id, "me", WorkflowStatus.FAILED, error="second")

    assert [n.error for n in store.list_notifications(workflow_id)] == ["first", "second"]


def test_runs_without_routes_write_nothing(store, workflow_id):
    _create(store, workflow_id, alerts=None)

    store.task_finished(workflow_id, "b", _value(b"b"), "'b'", 1.0, 1)
    store.finish(workflow_id, None, WorkflowStatus.FAILED, error="x")

    assert store.list_notifications(workflow_id) == []
    assert store.get_workflow(workflow_id).late(now=1e12) is False


def test_a_retry_is_an_event_per_attempt(store, workflow_id):
    _create(store, workflow_id)

    store.task_retrying(workflow_id, "a", 5.0, "IOError: flaky", "attempt 1\n")
    store.task_retrying(workflow_id, "a", 5.0, "IOError: flaky", "attempt 1\n")
    store.task_retrying(workflow_id, "a", 6.0, "IOError: flaky", "")

    retries = store.list_notifications(workflow_id)
    assert [(n.event, n.subject, n.occurrence) for n in retries] == [
        ("retry", "a", 5.0),
        ("retry", "a", 6.0),
    ]
    assert [log.text for log in store.task_logs(workflow_id, "a")] == ["attempt 1\n"]


def test_deliveries_are_claimed_under_a_lease_and_retried_or_given_up(store, workflow_id):
    _create(store, workflow_id)
    store.finish(workflow_id, "me", WorkflowStatus.FAILED, error="boom")
    mine = {n.notification_id for n in store.list_notifications(workflow_id)}

    claimed = [n for n in store.claim_notifications("d1", 500, 60) if n.notification_id in mine]
    again = [n for n in store.claim_notifications("d2", 500, 60) if n.notification_id in mine]

    assert len(claimed) == 2
    assert again == []  # held by d1
    hook = next(n for n in claimed if n.target == HOOK)
    mail = next(n for n in claimed if n.target == MAIL)
    assert store.notification_delivered(hook.notification_id, "d2") is False  # not its claim
    assert store.notification_delivered(hook.notification_id, "d1") is True
    assert store.notification_failed(mail.notification_id, "d1", "refused", retry_at=0.0)
    retried = [n for n in store.claim_notifications("d2", 500, 60) if n.notification_id in mine]
    assert [n.notification_id for n in retried] == [mail.notification_id]
    assert store.notification_failed(mail.notification_id, "d2", "refused again", None)

    states = {
        n.target: (n.state, n.attempts, n.last_error) for n in store.list_notifications(workflow_id)
    }
    assert states == {HOOK: ("delivered", 1, None), MAIL: ("failed", 2, "refused again")}
    counts, failures = store.notification_stats()
    assert counts["failed"] >= 1
    assert failures >= 2


@pytest.mark.parametrize("exists", [True, False])
def test_a_missed_deadline_is_reported_once_run_or_no_run(store, workflow_id, exists):
    if exists:
        _create(store, workflow_id)
    routes = [NotifyRoute("deadline_missed", HOOK)]

    store.deadline_missed(workflow_id, "flow", 99.0, routes, None)
    store.deadline_missed(workflow_id, "flow", 99.0, routes, None)  # a replica, too

    assert _events(store, workflow_id) == [("deadline_missed", HOOK, "pending")]
