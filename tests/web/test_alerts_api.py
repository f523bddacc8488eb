"""The REST API of issue 17: a run's notifications (masked), ``late``, backfills, and
typed params refused with the field named."""

from __future__ import annotations

from executor.status import WorkflowStatus
from executor.store import NewTask
from executor.store.records import NotifyRoute, RunAlerts
from tests.web import flows

SECRET_HOOK = "slack+https://hooks.slack.com/services/T000/B000/XXXXSECRET"


def test_a_runs_notifications_are_listed_with_their_secrets_masked(api, store, workflow_id):
    alerts = RunAlerts((NotifyRoute("failure", SECRET_HOOK),), deadline_at=1.0)
    tasks = [NewTask("t", "m.t", [], {})]
    store.create_workflow(workflow_id, "n", b"g", None, "t", tasks, {}, owner="me", alerts=alerts)
    store.finish(workflow_id, "me", WorkflowStatus.FAILED, error="ValueError: boom")

    body = api.get(f"/api/v1/workflows/{workflow_id}/notifications").get_json()
    run = api.get(f"/api/v1/workflows/{workflow_id}").get_json()

    [note] = body["notifications"]
    assert note["event"] == "failure"
    assert note["state"] == "pending"
    assert note["notifier"] == "slack+https://hooks.slack.com/services/***"
    assert "SECRET" not in str(body)
    assert run["late"] is True
    assert run["deadline_at"] == "1970-01-01T00:00:01Z"
    missing = api.get("/api/v1/workflows/nope-nope/notifications")
    assert missing.status_code == 404


def test_backfills_over_rest(api, app, services, registry, name):
    registry.register(
        lambda run: flows.source.bind(run.params["text"]),
        name=name,
        cron="0 0 * * *",
        paused=True,
        params={"text": "x"},
    )
    app.config["SCHEDULER"] = services(registry, start=False)
    app.config["SCHEDULER"].sync()
    url = f"/api/v1/schedules/{name}/backfill"

    dry = api.post(url, json={"start": "2026-01-01", "end": "2026-01-03", "dry_run": True})
    created = api.post(url, json={"start": "2026-01-01", "end": "2026-01-02", "max_active": 1})

    assert dry.status_code == 200
    assert dry.get_json() == {
        "backfill_id": None,
        "runs": [f"{name}@2026-01-0{day}T00:00:00Z" for day in (1, 2, 3)],
    }
    assert created.status_code == 201
    backfill_id = created.get_json()["backfill_id"]
    shown = api.get(f"/api/v1/backfills/{backfill_id}").get_json()
    assert shown["state"] == "running"
    assert shown["progress"]["queued"] == 2
    assert api.post(f"/api/v1/backfills/{backfill_id}/pause").get_json()["state"] == "paused"
    again = api.post(f"/api/v1/backfills/{backfill_id}/pause")
    assert again.status_code == 409
    assert "only a running backfill" in again.get_json()["error"]
    listed = api.get("/api/v1/backfills", query_string={"name": name}).get_json()
    assert [b["id"] for b in listed["backfills"]] == [backfill_id]
    assert api.get("/api/v1/backfills/nope").status_code == 404
    for body, message in [
        ({"start": "2026-01-01"}, "needs 'end'"),
        ({"start": "2026-01-02", "end": "2026-01-01"}, "is before its start"),
        ({"start": 1, "end": "2026-01-01"}, "'start' must be str"),
        ({"start": "2026-01-01", "end": "2026-01-02", "rerun": True}, "Unknown field(s) rerun"),
        ({"start": "2026-01-01", "end": "2026-01-02", "params": {"text": 5}}, "Param 'text'"),
    ]:
        refused = api.post(url, json=body)
        assert refused.status_code == 400, body
        assert message in refused.get_json()["error"]
    assert api.post("/api/v1/schedules/nope/backfill", json={}).status_code == 404


def test_a_trigger_with_params_that_break_the_schema_names_the_field(
    api, app, services, registry, name
):
    registry.register(
        lambda run: flows.source.bind(str(run.params)),
        name=name,
        params={"day": "2026-01-01", "n": 1},
        params_schema={
            "type": "object",
            "properties": {
                "day": {"type": "string", "format": "date"},
                "n": {"type": "integer", "minimum": 1},
                "mode": {"enum": ["fast", "slow"]},
            },
        },
    )
    app.config["SCHEDULER"] = services(registry)

    for params, field in [
        ({"n": 0}, "'n'"),
        ({"day": "tomorrow"}, "'day'"),
        ({"mode": 1}, "'mode'"),
    ]:
        refused = api.post(f"/api/v1/schedules/{name}/trigger", json={"params": params})
        assert refused.status_code == 400
        assert refused.get_json()["error"].startswith(f"Param {field}")


def test_metrics_count_failed_deliveries(api, store, workflow_id):
    alerts = RunAlerts((NotifyRoute("failure", "webhook+http://127.0.0.1:9/x"),))
    tasks = [NewTask("t", "m.t", [], {})]
    store.create_workflow(workflow_id, "n", b"g", None, "t", tasks, {}, owner="me", alerts=alerts)
    store.finish(workflow_id, "me", WorkflowStatus.FAILED, error="boom")
    [note] = store.list_notifications(workflow_id)
    before = _metric(api, "gnomon_notification_failures_total")
    [claimed] = [
        n
        for n in store.claim_notifications("tester", 1000, 60)
        if n.notification_id == note.notification_id
    ]
    store.notification_failed(claimed.notification_id, "tester", "refused", None)

    assert _metric(api, "gnomon_notification_failures_total") == before + 1
    assert _metric(api, 'gnomon_notifications{state="failed"}') >= 1


def _metric(api, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name}")
