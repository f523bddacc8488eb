"""``POST /api/v1/workflows/<id>/retry``, ``/clear`` and ``/fork`` on a registered run
whose third task had a bug, and their refusals."""

from __future__ import annotations

import pytest

from executor.status import WorkflowStatus
from tests.scheduler.registered import FIX, counts, failed_run, write_dags
from tests.waiting import eventually
from tests.web import flows


@pytest.fixture
def failed(make_app, services, workflow, dags, marks, name):
    """(a client of a dashboard whose scheduler has the workflow, its registry and
    folder, the failed run's id)."""
    registry, folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    client = make_app(SCHEDULER=services(registry, start=False)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer test-token-0123456789"
    return client, folder, workflow_id


def _ends(workflow, workflow_id: str, status=WorkflowStatus.SUCCESSFUL) -> None:
    eventually(lambda: workflow.get_status(workflow_id) == status, 60, f"{workflow_id} {status}")


def test_retry_clear_and_fork_through_the_api(failed, workflow, dags, marks, name):
    client, folder, workflow_id = failed
    write_dags(dags, marks, name, FIX)
    folder.refresh()

    assert client.post(f"/api/v1/workflows/{workflow_id}/retry").status_code == 202
    _ends(workflow, workflow_id)
    assert counts(marks) == [1, 1, 2, 1]
    run = client.get(f"/api/v1/workflows/{workflow_id}").json
    assert run["code"] is not None
    assert run["forked_from"] is None
    [earlier] = run["earlier_attempts"]
    assert earlier["status"] == "FAILED"
    assert "the bug" in earlier["error"]
    by_name = {task["task_id"].rsplit(".", 1)[-1]: task for task in run["tasks"]}

    body = {"tasks": [by_name["step_1"]["task_id"]], "downstream": True, "code": "recorded"}
    assert client.post(f"/api/v1/workflows/{workflow_id}/clear", json=body).status_code == 202
    _ends(workflow, workflow_id)
    assert counts(marks) == [1, 2, 3, 2]  # s2 and what follows it, not s1

    reply = client.post(f"/api/v1/workflows/{workflow_id}/fork", json={"params": {"start": 5}})
    assert reply.status_code == 201
    forked = reply.json["workflow_id"]
    _ends(workflow, forked)
    assert workflow.get_output(forked) == 71
    assert client.get(f"/api/v1/workflows/{forked}").json["forked_from"] == workflow_id
    assert client.get(f"/api/v1/workflows/{workflow_id}").json["forks"] == [forked]
    listed = client.get(f"/api/v1/workflows?code={run['code']}").json["workflows"]
    assert workflow_id in {item["id"] for item in listed}


@pytest.mark.parametrize(
    ("action", "body", "status", "message"),
    [
        ("retry", {"params": [1]}, 400, "params must be a JSON object"),
        ("retry", {"param": {}}, 400, "Unknown field(s) param"),
        ("retry", "[]", 400, "The body must be a JSON object"),
        ("clear", {"tasks": []}, 400, "tasks must be a non-empty list"),
        ("clear", {"tasks": ["nope"]}, 404, "nope"),
        ("clear", {"tasks": ["x"], "code": "newest"}, 400, 'code must be "current"'),
        ("clear", {"tasks": ["x"], "downstream": "yes"}, 400, "downstream must be true or false"),
        ("fork", {"from_task": "nope"}, 404, "nope"),
        ("fork", {"params": {"start": 1}, "code": "recorded"}, 400, "params need code='current'"),
    ],
)
def test_bad_requests_are_one_line_and_change_nothing(
    failed, workflow, store, marks, action, body, status, message
):
    client, _folder, workflow_id = failed
    before = store.load_tasks(workflow_id)
    if isinstance(body, str):
        reply = client.post(f"/api/v1/workflows/{workflow_id}/{action}", data=body)
    else:
        reply = client.post(f"/api/v1/workflows/{workflow_id}/{action}", json=body)

    assert reply.status_code == status
    assert message in reply.json["error"]
    assert "\n" not in reply.json["error"]
    assert store.load_tasks(workflow_id) == before
    assert store.forks(workflow_id) == []
    assert workflow.get_status(workflow_id) == WorkflowStatus.FAILED


def test_a_retry_of_an_unregistered_or_running_run_is_409(api, workflow, workflow_id, released):
    workflow.run_async(flows.waits_for_file.bind(str(released)), workflow_id=workflow_id)
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.RUNNING, 30, "running")
    reply = api.post(f"/api/v1/workflows/{workflow_id}/retry")
    assert reply.status_code == 409
    assert "RUNNING" in reply.json["error"]
    released.touch()
    _ends(workflow, workflow_id)

    reply = api.post(f"/api/v1/workflows/{workflow_id}/retry")
    assert reply.status_code == 409
    assert "not started from a registered workflow" in reply.json["error"]
