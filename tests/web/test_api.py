"""The REST API as DESIGN.md lists it: shapes, status codes, and JSON errors."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone

import pytest
import ray

from executor.errors import WorkflowExecutionError
from executor.events import MAX_PAYLOAD_BYTES
from executor.status import WorkflowStatus
from scheduler.registry import Registry
from tests.waiting import eventually
from tests.web import flows
from tests.web.conftest import seed

WORKFLOW_KEYS = [
    "id",
    "name",
    "status",
    "trigger",
    "created_at",
    "started_at",
    "ended_at",
    "deadline_at",
    "late",
    "code",
    "forked_from",
]
DETAIL_KEYS = [
    *WORKFLOW_KEYS,
    "metadata",
    "output_preview",
    "error",
    "tasks",
    "forks",
    "earlier_attempts",
]
TASK_KEYS = [
    "task_id",
    "name",
    "status",
    "attempts",
    "code",
    "started_at",
    "ended_at",
    "output_preview",
    "error",
    "pool",
    "queued_s",
    "retry_at",
    "next_attempt",
    "max_attempts",
]


def test_list_is_newest_first_and_pages_by_cursor(api, store):
    name = f"n-{uuid.uuid4().hex[:8]}"
    ids = [f"{name}-{i}" for i in range(5)]
    for workflow_id in ids:
        seed(store, workflow_id, workflow_name=name, tasks=1)

    first = api.get(f"/api/v1/workflows?name={name}&limit=2").json
    second = api.get(f"/api/v1/workflows?name={name}&limit=2&cursor={first['next']}").json
    third = api.get(f"/api/v1/workflows?name={name}&limit=2&cursor={second['next']}").json

    assert list(first) == ["workflows", "next"]
    assert list(first["workflows"][0]) == WORKFLOW_KEYS
    pages = [first, second, third]
    assert [w["id"] for page in pages for w in page["workflows"]] == ids[::-1]
    assert third["next"] is None
    assert first["workflows"][0]["created_at"].endswith("Z")


def test_list_filters_by_status(api, store):
    name = f"n-{uuid.uuid4().hex[:8]}"
    seed(store, f"{name}-ok", WorkflowStatus.SUCCESSFUL, workflow_name=name)
    seed(store, f"{name}-bad", WorkflowStatus.FAILED, workflow_name=name)
    seed(store, f"{name}-gone", WorkflowStatus.RESUMABLE, workflow_name=name)

    failed = api.get(f"/api/v1/workflows?name={name}&status=FAILED").json["workflows"]
    both = api.get(f"/api/v1/workflows?name={name}&status=failed,resumable").json["workflows"]

    assert [w["id"] for w in failed] == [f"{name}-bad"]
    assert {w["id"]: w["status"] for w in both} == {
        f"{name}-bad": "FAILED",
        f"{name}-gone": "RESUMABLE",
    }


@pytest.mark.parametrize(
    "query", ["status=DONE", "limit=0", "limit=x", "limit=100000", "cursor=@@", "q=x"]
)
def test_list_rejects_bad_parameters(api, query):
    response = api.get(f"/api/v1/workflows?{query}")
    assert response.status_code == 400
    assert set(response.json) == {"error"}


def test_get_returns_the_run_and_its_tasks(api, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.FAILED, tasks=2, metadata={"team": "data"})

    body = api.get(f"/api/v1/workflows/{workflow_id}").json

    assert list(body) == DETAIL_KEYS
    assert body["status"] == "FAILED"
    assert body["metadata"] == {"team": "data"}
    assert body["error"].endswith("ValueError: boom")
    assert [list(task) for task in body["tasks"]] == [TASK_KEYS, TASK_KEYS]
    assert [task["status"] for task in body["tasks"]] == ["SUCCESSFUL", "FAILED"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", "/resume"),
        ("POST", "/cancel"),
        ("DELETE", ""),
        ("POST", "/events/key"),
    ],
)
def test_unknown_workflow_is_404(api, method, suffix):
    response = api.open(f"/api/v1/workflows/no-such-run{suffix}", method=method, data="{}")
    assert response.status_code == 404
    assert response.json == {"error": "No workflow 'no-such-run'"}


def test_resume_a_failed_run_after_fixing_its_cause(api, workflow, workflow_id, tmp_path):
    cause = tmp_path / "input"
    ref = workflow.run_async(flows.needs_file.bind(str(cause), "ok"), workflow_id=workflow_id)
    with pytest.raises(WorkflowExecutionError):
        ray.get(ref, timeout=60)
    assert api.get(f"/api/v1/workflows/{workflow_id}").json["status"] == "FAILED"

    cause.touch()
    assert api.post(f"/api/v1/workflows/{workflow_id}/resume").status_code == 202

    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.SUCCESSFUL)
    again = api.post(f"/api/v1/workflows/{workflow_id}/resume")
    assert again.status_code == 409
    assert "SUCCESSFUL" in again.json["error"]


def test_cancel_a_running_run_then_conflict(api, workflow, workflow_id, released):
    workflow.run_async(flows.waits_for_file.bind(str(released)), workflow_id=workflow_id)
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.RUNNING)

    assert api.post(f"/api/v1/workflows/{workflow_id}/cancel").status_code == 202
    assert workflow.get_status(workflow_id) == WorkflowStatus.CANCELED
    assert api.post(f"/api/v1/workflows/{workflow_id}/cancel").status_code == 409


def test_delete_is_refused_while_active(api, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    refused = api.delete(f"/api/v1/workflows/{workflow_id}")
    assert refused.status_code == 409
    assert "RUNNING" in refused.json["error"]

    store.finish(workflow_id, None, WorkflowStatus.FAILED, error="x")
    assert api.delete(f"/api/v1/workflows/{workflow_id}").status_code == 204
    assert api.get(f"/api/v1/workflows/{workflow_id}").status_code == 404


def test_event_releases_a_waiting_run(api, workflow, workflow_id):
    wait = workflow.wait_for_event(workflow.HTTPListener, event_key="approve")
    ref = workflow.run_async(flows.show.bind(wait), workflow_id=workflow_id)

    response = api.post(
        f"/api/v1/workflows/{workflow_id}/events/approve",
        data='{"by": "ops"}',
        content_type="application/json",
    )

    assert response.status_code == 202
    assert response.json["event_key"] == "approve"
    assert ray.get(ref, timeout=60) == "('approve', {'by': 'ops'})"
    closed = api.post(f"/api/v1/workflows/{workflow_id}/events/approve", data="1")
    assert closed.status_code == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("", 400),
        ("{not json", 400),
        ("NaN", 400),
        ("[" * 3, 400),
        ("1" * (MAX_PAYLOAD_BYTES + 1), 413),
        ("1" * (3 << 20), 413),
    ],
)
def test_bad_event_payloads(api, store, workflow_id, body, status):
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    response = api.post(f"/api/v1/workflows/{workflow_id}/events/k", data=body)
    assert response.status_code == status
    assert set(response.json) == {"error"}
    assert store.list_events(workflow_id) == []


def _registry(name: str, fail: bool = False) -> Registry:
    registry = Registry()

    @registry.register(name=name, cron="0 3 * * *", params={"text": "default"})
    def factory(run):
        if fail or run.params.get("explode"):
            raise ValueError("the factory says no")
        return flows.shout.bind(run.params["text"])

    return registry


def test_schedules_list_trigger_pause_unpause(make_app, services, name, workflow):
    service = services(_registry(name))
    api = make_app(SCHEDULER=service).test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = "Bearer test-token-0123456789"

    listed = [s for s in api.get("/api/v1/schedules").json["schedules"] if s["name"] == name]
    assert listed == [
        {
            "name": name,
            "trigger": "cron 0 3 * * * (UTC)",
            "next_run_at": listed[0]["next_run_at"],
            "paused": False,
            "backlog": 0,
            "last_run": None,
        }
    ]
    assert listed[0]["next_run_at"].endswith("T03:00:00Z")

    started = api.post(f"/api/v1/schedules/{name}/trigger", json={"params": {"text": "hey"}})
    assert started.status_code == 201
    workflow_id = started.json["workflow_id"]
    assert workflow.wait_for_completion(workflow_id) == WorkflowStatus.SUCCESSFUL
    assert workflow.get_output(workflow_id) == "HEY"
    assert api.get(f"/api/v1/workflows/{workflow_id}").json["metadata"]["params"] == {"text": "hey"}
    assert workflow.get_metadata(workflow_id)["status"] == WorkflowStatus.SUCCESSFUL

    paused = api.post(f"/api/v1/schedules/{name}/pause")
    assert paused.status_code == 200
    assert paused.json["paused"] is True
    assert service.schedule(name).paused
    metrics = api.get("/metrics").text
    assert f'gnomon_scheduler_lag_seconds{{schedule="{name}"}} 0.0' in metrics
    assert f'gnomon_schedule_paused{{schedule="{name}"}} 1.0' in metrics
    unpaused = api.post(f"/api/v1/schedules/{name}/unpause")
    assert unpaused.status_code == 200
    assert unpaused.json["paused"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"params": [1]}', 400),
        ("[]", 400),
        ("{oops", 400),
        ('{"param": {}}', 400),
        ('{"params": {"explode": true}}', 400),
    ],
)
def test_trigger_rejects_bad_requests(make_app, services, name, workflow, body, status):
    api = make_app(SCHEDULER=services(_registry(name), start=True)).test_client()
    response = api.post(
        f"/api/v1/schedules/{name}/trigger",
        data=body,
        headers={"Authorization": "Bearer test-token-0123456789"},
    )
    assert response.status_code == status
    assert set(response.json) == {"error"}


@pytest.mark.parametrize("action", ["trigger", "pause", "unpause"])
def test_unknown_schedule_is_404(make_app, services, workflow, action):
    api = make_app(SCHEDULER=services(Registry(), start=False)).test_client()
    response = api.post(
        f"/api/v1/schedules/nope/{action}",
        headers={"Authorization": "Bearer test-token-0123456789"},
    )
    assert response.status_code == 404
    assert response.json == {"error": "No schedule 'nope'"}


def test_without_a_scheduler_schedules_are_unavailable(api):
    response = api.get("/api/v1/schedules")
    assert response.status_code == 503
    assert "scheduler" in response.json["error"]


def test_unknown_routes_and_methods_answer_json(api):
    assert api.get("/api/v1/nothing").status_code == 404
    assert api.get("/api/v1/nothing").json["error"]
    wrong_method = api.put("/api/v1/workflows")
    assert wrong_method.status_code == 405
    assert wrong_method.json["error"]


def test_healthz_and_metrics(api, workflow, workflow_id):
    assert api.get("/healthz").json == {"ok": True}
    ray.get(workflow.run_async(flows.shout.bind("abc"), workflow_id=workflow_id), timeout=60)

    text = api.get("/metrics").text

    assert 'gnomon_workflows{status="SUCCESSFUL"}' in text
    assert 'gnomon_task_duration_seconds_count{name="tests.web.flows.shout"} 1.0' in text


def test_start_delay_of_a_scheduled_run(store, workflow_id):
    from web.metrics import _start_delay

    run_id = f"{workflow_id}@2026-01-01T03:00:00Z"
    seed(store, run_id, trigger="schedule")
    seed(store, f"{workflow_id}@2026-01-01T04:00:00Z", trigger="manual")
    logical = datetime(2026, 1, 1, 3, tzinfo=timezone.utc).timestamp()

    delay = _start_delay(store, {"id": run_id, "status": "SUCCESSFUL"})

    assert delay == pytest.approx(store.get_workflow(run_id).created_at - logical)
    manual = {"id": f"{workflow_id}@2026-01-01T04:00:00Z", "status": "SUCCESSFUL"}
    assert _start_delay(store, manual) is None  # a trigger by hand is not late
    assert _start_delay(store, None) is None


# Bad inputs the fuzzing (tests/web/test_openapi_fuzz.py) found answering 500.


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workflows/a%00b",
        "/api/v1/workflows?name=a%00b",
        "/api/v1/workflows/a%00b/resume",
        "/api/v1/schedules/a%00b/pause",
    ],
)
def test_a_nul_character_is_a_400_on_both_databases(api, path):
    # PostgreSQL refuses a NUL even in a lookup; that must not reach the store.
    method = "POST" if path.endswith(("resume", "pause")) else "GET"
    response = api.open(path, method=method)
    assert response.status_code == 400
    assert "NUL" in response.json["error"]


def test_a_nul_in_an_event_key_is_a_400(api, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    response = api.post(f"/api/v1/workflows/{workflow_id}/events/a%00b", data="1")
    assert response.status_code == 400
    assert "event_key" in response.json["error"]
    assert store.list_events(workflow_id) == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # '²' is a digit that int() refuses
        "limit=" + "1" * 5000,  # past int()'s 4,300-digit limit
        "cursor=" + base64.urlsafe_b64encode(b'[1e999,"x"]').decode(),  # inf
        "cursor=" + base64.urlsafe_b64encode(f'[{10**400},"x"]'.encode()).decode(),
        "cursor=" + base64.urlsafe_b64encode(b"[" * 50_000 + b"]" * 50_000).decode(),
    ],
)
def test_malformed_limits_and_cursors_are_400(api, query):
    response = api.get(f"/api/v1/workflows?{query}")
    assert response.status_code == 400
    assert set(response.json) == {"error"}


def test_deeply_nested_json_is_a_400(api, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    nested = "[" * 100_000 + "]" * 100_000  # under 1 MiB, past Python's recursion limit
    response = api.post(f"/api/v1/workflows/{workflow_id}/events/k", data=nested)
    assert response.status_code == 400
    assert "not valid JSON" in response.json["error"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_trigger_params_refuse_nan(make_app, services, name, workflow, constant):
    # Stored in the run's metadata, a NaN would make every later read invalid JSON.
    api = make_app(SCHEDULER=services(_registry(name), start=True)).test_client()
    response = api.post(
        f"/api/v1/schedules/{name}/trigger",
        data=f'{{"params": {{"x": {constant}}}}}',
        headers={"Authorization": "Bearer test-token-0123456789"},
    )
    assert response.status_code == 400
    assert f"{constant} is not a JSON value" in response.json["error"]


def test_healthz_answers_json_errors(api):
    response = api.post("/healthz")
    assert response.status_code == 405
    assert response.json["error"]
