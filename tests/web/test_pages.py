"""The pages and their live parts: what they show, which buttons, and escaping."""

from __future__ import annotations

import pickle
import re
import uuid

import pytest
import ray
from ray import cloudpickle

from executor.errors import WorkflowExecutionError
from executor.status import WorkflowStatus
from executor.store import NewTask
from scheduler.registry import Registry
from tests.waiting import eventually
from tests.web import flows
from tests.web.conftest import csrf_of, seed

XSS = "<script>alert(1)</script>"


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-workflow-id="([^"]+)"', html)


def test_runs_list_newest_first_with_status_duration_and_trigger(browser, store):
    name = f"n-{uuid.uuid4().hex[:8]}"
    seed(store, f"{name}-a", WorkflowStatus.SUCCESSFUL, workflow_name=name, trigger="schedule")
    seed(store, f"{name}-b", WorkflowStatus.FAILED, workflow_name=name, trigger="api")

    html = browser.get(f"/?name={name}").text

    assert run_ids(html) == [f"{name}-b", f"{name}-a"]
    assert 'class="status status-FAILED">FAILED' in html
    assert ">API</td>" in html
    assert ">schedule</td>" in html
    assert re.search(r"data-label=\"Duration\">\d+ ms<", html)
    assert 'hx-trigger="every 2s"' in html
    assert f'hx-get="/parts/runs?name={name}"' in html


def test_runs_list_filters_search_and_pages(browser, store):
    name = f"n-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        seed(store, f"{name}-{i}", WorkflowStatus.SUCCESSFUL, workflow_name=name, tasks=1)
    seed(store, f"{name}-x", WorkflowStatus.FAILED, workflow_name=name, tasks=1)

    assert run_ids(browser.get(f"/?name={name}&status=FAILED").text) == [f"{name}-x"]
    assert run_ids(browser.get(f"/?q={name}-1").text) == [f"{name}-1"]
    first = browser.get(f"/?name={name}&limit=2").text
    older = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = browser.get(older).text
    assert run_ids(first) + run_ids(second) == [f"{name}-x", f"{name}-2", f"{name}-1", f"{name}-0"]
    assert "← Newest" in second
    assert 'rel="next"' not in second
    rows = browser.get(f"/parts/runs?name={name}&status=SUCCESSFUL").text
    assert run_ids(rows) == [f"{name}-2", f"{name}-1", f"{name}-0"]
    assert "<html" not in rows
    assert browser.get("/?status=BOGUS").status_code == 400


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        (WorkflowStatus.RUNNING, {"Cancel"}),
        (WorkflowStatus.PENDING, {"Cancel"}),
        (WorkflowStatus.FAILED, {"Resume", "Delete"}),
        (WorkflowStatus.RESUMABLE, {"Resume", "Delete"}),
        (WorkflowStatus.CANCELED, {"Resume", "Delete"}),
        (WorkflowStatus.SUCCESSFUL, {"Delete"}),
    ],
)
def test_run_page_offers_the_buttons_the_state_allows(browser, store, workflow_id, status, buttons):
    seed(store, workflow_id, status)

    html = browser.get(f"/runs/{workflow_id}").text

    header = html[html.index('id="run-header"') : html.index('class="run-grid"')]
    shown = set(re.findall(r'<button class="(?:primary|danger|)">(\w+)</button>', header))
    assert shown == buttons
    has_event_form = 'name="event_key"' in html
    assert has_event_form == (status not in (WorkflowStatus.SUCCESSFUL, WorkflowStatus.CANCELED))


def test_run_page_sections(browser, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.FAILED, tasks=4, metadata={"owner": "data-team"})

    html = browser.get(f"/runs/{workflow_id}").text

    for section in [
        'id="graph"',
        'id="timeline"',
        'id="tasks"',
        'id="logs"',
        'id="events"',
        'id="metadata"',
    ]:
        assert section in html
    assert html.count('class="bar status-') == 4
    assert html.count("<tr data-task-id=") == 4
    assert "ValueError: boom" in html
    assert "data-team" in html
    assert browser.get("/runs/no-such-run").status_code == 404


def test_live_part_polls_while_active_and_slows_when_done(browser, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    running = browser.get(f"/parts/live/{workflow_id}")
    assert running.headers["HX-Trigger-After-Settle"] == "gnomon:tick"
    assert 'hx-trigger="every 2s"' in running.text
    assert 'hx-swap-oob="true"' in running.text

    assert 'id="send-event"' not in running.text  # the form being typed in stays

    store.finish(workflow_id, None, WorkflowStatus.CANCELED)
    done = browser.get(f"/parts/live/{workflow_id}").text
    assert 'hx-trigger="every 10s"' in done
    assert 'data-status="CANCELED"' in done
    assert '<section id="send-event" hidden hx-swap-oob="true">' in done  # no more events

    store.delete_workflow(workflow_id)
    gone = browser.get(f"/parts/live/{workflow_id}")
    assert gone.status_code == 286
    assert "was deleted" in gone.text
    assert "hx-trigger" not in gone.text


def test_task_table_pages_and_filters(browser, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.FAILED, tasks=130)

    first = browser.get(f"/parts/tasks/{workflow_id}").text
    second = browser.get(f"/parts/tasks/{workflow_id}?page=2").text
    failed = browser.get(f"/parts/tasks/{workflow_id}?status=FAILED").text

    assert first.count("<tr data-task-id=") == 50
    assert "1–50 of 130" in first
    assert second.count("<tr data-task-id=") == 50
    assert "51–100 of 130" in second
    assert failed.count("<tr data-task-id=") == 1
    assert "tests.fake.step_129" in failed
    assert browser.get(f"/parts/tasks/{workflow_id}?status=NOPE").status_code == 400
    for page in ["%C2%B2", "1" * 5000, "-1"]:  # not a page number: the first page
        odd = browser.get(f"/parts/tasks/{workflow_id}?page={page}")
        assert odd.status_code == 200
        assert "1–50 of 130" in odd.text


def test_graph_has_a_node_per_task_and_edges_from_upstream(browser, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.SUCCESSFUL, tasks=3)

    graph = browser.get(f"/parts/graph/{workflow_id}").json

    assert [node["id"] for node in graph["nodes"]] == [f"tests.fake.step_{i}" for i in range(3)]
    assert {node["status"] for node in graph["nodes"]} == {"SUCCESSFUL"}
    assert [(e["source"], e["target"]) for e in graph["edges"]] == [
        ("tests.fake.step_0", "tests.fake.step_1"),
        ("tests.fake.step_1", "tests.fake.step_2"),
    ]
    assert graph["collapsed"] is False
    assert graph["active"] is False


def test_continuation_tasks_are_grouped_under_their_parent(browser, workflow, workflow_id):
    ray.get(workflow.run_async(flows.expand.bind(3), workflow_id=workflow_id), timeout=60)

    graph = browser.get(f"/parts/graph/{workflow_id}").json

    parent = "tests.web.flows.expand"
    children = [node for node in graph["nodes"] if node["cluster"] == f"c:{parent}"]
    assert len(children) == 4  # three sources and the join
    assert graph["clusters"] == [
        {"id": f"c:{parent}", "label": "continuation of expand", "parent": None}
    ]
    continues = [e for e in graph["edges"] if e["kind"] == "continuation"]
    assert {e["source"] for e in continues} == {parent}
    assert len(continues) == 3


def test_large_runs_collapse_into_groups_by_function(browser, store, workflow_id):
    ids = [f"m.a_{i}" for i in range(400)] + [f"m.b_{i}" for i in range(200)]
    rows = [NewTask(i, "m.a", [], {}) for i in ids[:400]]
    rows += [NewTask(i, "m.b", [f"m.a_{n}"], {}) for n, i in enumerate(ids[400:])]
    store.create_workflow(workflow_id, "big", None, None, "m.b_0", rows, {})
    store.tasks_started(workflow_id, [("m.a_0", 1.0)])

    graph = browser.get(f"/parts/graph/{workflow_id}").json
    html = browser.get(f"/runs/{workflow_id}").text

    assert graph["collapsed"] is True
    assert graph["total"] == 600
    assert [(n["id"], n["count"], n["status"]) for n in graph["nodes"]] == [
        ("g:m.a", 400, "RUNNING"),
        ("g:m.b", 200, "PENDING"),
    ]
    assert graph["edges"] == [{"source": "g:m.a", "target": "g:m.b", "kind": "data"}]
    assert ">a 1/400</text>" in html
    assert "by function" in html


def test_logs_of_each_attempt(browser, workflow, workflow_id):
    ray.get(workflow.run_async(flows.chatty.bind(3), workflow_id=workflow_id), timeout=60)
    task_id = "tests.web.flows.chatty"

    html = browser.get(f"/parts/logs/{workflow_id}?task_id={task_id}").text

    assert "Attempt 1" in html
    assert "line 2 to stdout" in html
    assert "to stderr" in html
    assert "a logging record" in html
    assert "hx-trigger" not in html  # finished: no tailing
    text = browser.get(f"/logs/{workflow_id}?task_id={task_id}&attempt=1")
    assert text.mimetype == "text/plain"
    assert "line 0 to stdout" in text.text
    assert browser.get(f"/logs/{workflow_id}?task_id={task_id}&attempt=9").status_code == 404
    assert browser.get(f"/parts/logs/{workflow_id}?task_id=nope").status_code == 404


def test_logs_of_a_running_task_are_tailed(browser, store, workflow_id):
    seed(store, workflow_id, WorkflowStatus.RUNNING, tasks=1)
    html = browser.get(f"/parts/logs/{workflow_id}?task_id=tests.fake.step_0").text
    assert 'hx-trigger="every 2s"' in html
    assert "No output captured yet" in html


def test_without_log_capture_the_page_says_so(browser, store, workflow_id, monkeypatch):
    seed(store, workflow_id, WorkflowStatus.FAILED, tasks=1)
    monkeypatch.setattr(store, "task_logs", None, raising=False)  # an older store
    html = browser.get(f"/runs/{workflow_id}").text
    assert "does not capture task logs" in html


def test_outputs_errors_ids_and_payloads_are_escaped(browser, workflow, store, workflow_id):
    ray.get(workflow.run_async(flows.source.bind(XSS), workflow_id=workflow_id), timeout=60)
    seed(
        store,
        f"{workflow_id}-{XSS}",
        WorkflowStatus.FAILED,
        error=XSS,
        preview=XSS,
        metadata={"note": XSS},
    )
    waiting = f"{workflow_id}-waits"
    seed(store, waiting, WorkflowStatus.RUNNING)
    store.send_event(waiting, "key", f'{{"html": "{XSS}"}}')

    pages = [
        browser.get(f"/runs/{workflow_id}").text,
        browser.get(f"/parts/tasks/{workflow_id}").text,
        browser.get("/").text,
        browser.get(f"/runs/{workflow_id}-{XSS}").text,
        browser.get(f"/runs/{waiting}").text,
        browser.get(f"/parts/live/{waiting}").text,
    ]
    for html in pages:
        assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;" in pages[4]
    assert "html" in pages[4]


def test_send_event_form_validates_and_releases_the_run(browser, workflow, workflow_id):
    wait = workflow.wait_for_event(workflow.HTTPListener, event_key="approve")
    ref = workflow.run_async(flows.show.bind(wait), workflow_id=workflow_id)
    page = browser.get(f"/runs/{workflow_id}")
    token = csrf_of(page.text)

    bad = browser.post(
        f"/runs/{workflow_id}/events",
        data={"csrf_token": token, "event_key": "approve", "payload": "{oops"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    assert "{oops</textarea>" in bad.text

    good = browser.post(
        f"/runs/{workflow_id}/events",
        data={"csrf_token": token, "event_key": "approve", "payload": '{"ok": 1}'},
    )
    assert good.status_code == 302
    assert ray.get(ref, timeout=60) == "('approve', {'ok': 1})"
    assert "Sent event" in browser.get(good.headers["Location"]).text


def test_buttons_resume_cancel_delete(browser, workflow, store, workflow_id, released, tmp_path):
    cause = tmp_path / "cause"
    with pytest.raises(WorkflowExecutionError):
        ray.get(
            workflow.run_async(flows.needs_file.bind(str(cause), "v"), workflow_id=workflow_id),
            timeout=60,
        )
    token = csrf_of(browser.get(f"/runs/{workflow_id}").text)
    cause.touch()

    assert (
        browser.post(f"/runs/{workflow_id}/resume", data={"csrf_token": token}).status_code == 302
    )
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.SUCCESSFUL)
    refused = browser.post(f"/runs/{workflow_id}/cancel", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "RUNNING or PENDING" in refused.text

    deleted = browser.post(f"/runs/{workflow_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 302
    assert deleted.headers["Location"] == "/"
    assert browser.get(f"/runs/{workflow_id}").status_code == 404


def test_the_web_process_never_unpickles(browser, workflow, workflow_id, monkeypatch):
    ray.get(
        workflow.run_async(
            flows.join.bind(flows.source.bind("a"), flows.source.bind("b")), workflow_id=workflow_id
        ),
        timeout=60,
    )

    def refuse(*args, **kwargs):
        raise AssertionError("the dashboard unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(cloudpickle, "loads", refuse)
    for path in [
        f"/runs/{workflow_id}",
        f"/parts/live/{workflow_id}",
        f"/parts/tasks/{workflow_id}",
        f"/parts/graph/{workflow_id}",
        "/",
        f"/api/v1/workflows/{workflow_id}",
        "/api/v1/workflows",
        "/metrics",
    ]:
        response = browser.get(path)
        assert response.status_code == 200, path
    assert "&#39;a+b&#39;</pre>" in browser.get(f"/runs/{workflow_id}").text


def _registry(name: str) -> Registry:
    registry = Registry()

    @registry.register(name=name, cron="0 3 * * *", params={"text": "default", "n": 2})
    def factory(run):
        if run.params.get("explode"):
            raise ValueError("the factory says no")
        return flows.shout.bind(run.params["text"])

    registry.import_errors["/dags/broken.py"] = f"SyntaxError: invalid syntax {XSS}"
    return registry


def test_schedules_page_trigger_pause_unpause(make_app, services, name, workflow):
    service = services(_registry(name))
    client = make_app(SCHEDULER=service).test_client()
    client.get("/?token=test-token-0123456789")

    html = client.get("/schedules").text
    token = csrf_of(html)
    row = html[html.index(f'id="schedule-{name}"') :]
    assert "every day at 03:00 UTC" in row
    assert "no runs yet" in row
    # Typed fields from the params' inferred schema, with their defaults.
    assert 'name="param.n" data-param="n" value="2"' in row
    assert 'type="number"' in row
    assert 'name="param.text" data-param="text" value="default"' in row
    assert "/dags/broken.py" in html
    assert "&lt;script&gt;" in html
    assert "<script>alert" not in html

    bad = client.post(f"/schedules/{name}/trigger", data={"csrf_token": token, "params": "[1]"})
    assert bad.status_code == 400
    assert "must be a JSON object" in bad.text
    assert "[1]</textarea>" in bad.text
    assert '<details class="trigger" open>' in bad.text
    boom = client.post(
        f"/schedules/{name}/trigger", data={"csrf_token": token, "params": '{"explode": true}'}
    )
    assert boom.status_code == 400
    assert "the factory says no" in boom.text

    started = client.post(
        f"/schedules/{name}/trigger", data={"csrf_token": token, "params": '{"text": "hi"}'}
    )
    assert started.status_code == 302
    workflow_id = started.headers["Location"].removeprefix("/runs/")
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.SUCCESSFUL)
    assert workflow.get_output(workflow_id) == "HI"
    assert workflow_id in client.get("/schedules").text

    client.post(f"/schedules/{name}/pause", data={"csrf_token": token})
    assert service.schedule(name).paused
    assert "tag-paused" in client.get("/schedules").text
    client.post(f"/schedules/{name}/unpause", data={"csrf_token": token})
    assert not service.schedule(name).paused
    assert client.post("/schedules/nope/pause", data={"csrf_token": token}).status_code == 404


def test_schedules_page_without_a_scheduler(browser):
    html = browser.get("/schedules").text
    assert "No scheduler is attached" in html
