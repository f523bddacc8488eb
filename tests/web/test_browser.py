"""Chromium drives a real dashboard: waitress on a free port, Ray, and a running scheduler.

Screenshots go to ``$GNOMON_SCREENSHOTS`` when it is set (``docs/screenshots`` for the
docs), else to a temporary directory.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from executor.errors import WorkflowExecutionError
from executor.store import NewTask
from scheduler.registry import Registry
from scheduler.service import SchedulerService
from tests.web import flows
from tests.web.conftest import TOKEN
from web import create_app, serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: How long the page may take to show a change that polling brings.
LIVE_TIMEOUT = 20_000
expect.set_options(timeout=LIVE_TIMEOUT)


@dataclass
class Stack:
    url: str
    workflow: Any
    store: Any
    service: SchedulerService
    greet: str
    nightly: str
    typed: str
    browser: Browser
    shots: Path

    def shot(self, page: Page, name: str, full_page: bool = True) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)


def _registry(suffix: str) -> Registry:
    registry = Registry()

    @registry.register(name=f"greet_{suffix}", params={"who": "world"})
    def greet(run):
        return flows.shout.bind(flows.source.bind(run.params["who"]))

    @registry.register(name=f"nightly_{suffix}", cron="0 3 * * *", params={"orders": 500})
    def nightly(run):
        return flows.join.bind(flows.source.bind("extract"), flows.source.bind("load"))

    @registry.register(name=f"typed_{suffix}", params_schema=TYPED_SCHEMA)
    def typed(run):
        return flows.source.bind(json.dumps(run.params, sort_keys=True))

    return registry


#: A schedule whose trigger form has one field of each typed kind.
TYPED_SCHEMA = {
    "type": "object",
    "properties": {
        "batch": {"type": "integer", "minimum": 1, "default": 10, "description": "rows per batch"},
        "region": {"enum": ["eu", "us"], "default": "eu"},
        "day": {"type": "string", "format": "date", "default": "2026-01-01"},
        "dry_run": {"type": "boolean", "default": False},
    },
}


@pytest.fixture(scope="module")
def stack(ray_address, sqlite_url, blob_root, tmp_path_factory) -> Iterator[Stack]:
    from executor import workflow
    from executor.config import StoreConfig, handles

    workflow.init(sqlite_url, storage=str(blob_root))
    suffix = uuid.uuid4().hex[:6]
    service = SchedulerService(
        _registry(suffix), sqlite_url, storage=str(blob_root), poll_interval=0.2
    ).start()
    app = create_app(
        {
            "DATABASE_URL": sqlite_url,
            "STORAGE": str(blob_root),
            "API_TOKEN": TOKEN,
            "SCHEDULER": service,
            "POLL_SECONDS": 1,
        }
    )
    server = serve(app, "127.0.0.1", 0)
    shots = Path(os.environ.get("GNOMON_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            yield Stack(
                server.url.rstrip("/"),
                workflow,
                handles(StoreConfig.resolve(sqlite_url, str(blob_root)))[0],
                service,
                f"greet_{suffix}",
                f"nightly_{suffix}",
                f"typed_{suffix}",
                browser,
                shots,
            )
        finally:
            browser.close()
            server.close()
            for name in (f"greet_{suffix}", f"nightly_{suffix}", f"typed_{suffix}"):
                service.remove(name)  # the database outlives this module
            service.stop()


#: What Chromium logs for a form answered with 400 or 409: expected in the error tests.
_REFUSED = "Failed to load resource: the server responded with a status of 4"


def _console_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error" and not message.text.startswith(_REFUSED):
        errors.append(message.text)


@pytest.fixture
def page(stack: Stack) -> Iterator[Page]:
    """A logged-in laptop-sized tab; its console must stay free of errors (CSP included)."""
    context = stack.browser.new_context(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    context.on("console", lambda message: _console_error(message, errors))
    context.on("weberror", lambda error: errors.append(str(error.error)))
    tab = context.new_page()
    tab.set_default_timeout(LIVE_TIMEOUT)
    tab.goto(f"{stack.url}/?token={TOKEN}")
    expect(tab.get_by_role("heading", name="Runs")).to_be_visible()
    yield tab
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def status_of(page: Page, workflow_id: str) -> Any:
    return page.locator(f'tr[data-workflow-id="{workflow_id}"] .status')


def test_log_in_with_the_token(stack: Stack) -> None:
    context = stack.browser.new_context(viewport={"width": 1280, "height": 700})
    tab = context.new_page()
    tab.goto(f"{stack.url}/schedules")
    expect(tab).to_have_url(f"{stack.url}/login?next=/schedules")
    stack.shot(tab, "login")

    tab.get_by_label("API token").fill("not-the-token")
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_role("alert")).to_have_text("That token is not valid")
    tab.get_by_label("API token").fill(TOKEN)
    tab.get_by_role("button", name="Log in").click()

    expect(tab.get_by_role("heading", name="Schedules")).to_be_visible()
    assert tab.url == f"{stack.url}/schedules"
    context.close()


def test_watch_a_run_finish_without_reloading(stack: Stack, page: Page, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    workflow_id = f"report-{uuid.uuid4().hex[:6]}"
    parts = [flows.shout.bind(flows.source.bind(word)) for word in ("orders", "refunds")]
    dag = flows.join.bind(*parts, flows.waits_for_file.bind(str(gate)))
    ref = stack.workflow.run_async(dag, workflow_id=workflow_id)
    try:
        page.goto(f"{stack.url}/")
        expect(status_of(page, workflow_id)).to_have_text("RUNNING")
        run_page = page.context.new_page()
        run_page.goto(f"{stack.url}/runs/{workflow_id}")
        expect(run_page.locator("#run-header .status")).to_have_text("RUNNING")
        expect(run_page.locator("#graph svg g.node")).to_have_count(6)
        stack.shot(run_page, "run-running")
        for tab in (page, run_page):
            tab.evaluate("window.stillTheSamePage = true")
    finally:
        gate.touch()
    assert ray.get(ref, timeout=60) == "ORDERS+REFUNDS+released"

    expect(status_of(page, workflow_id)).to_have_text("SUCCESSFUL")
    expect(run_page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
    expect(run_page.locator("#graph g.node.status-SUCCESSFUL")).to_have_count(6)
    for tab in (page, run_page):
        assert tab.evaluate("window.stillTheSamePage") is True

    page.get_by_role("link", name=workflow_id).click()
    tasks = stack.store.load_tasks(workflow_id)
    nodes = page.locator("#graph svg g.node")
    expect(nodes).to_have_count(len(tasks))
    drawn = sorted(nodes.evaluate_all("nodes => nodes.map(n => n.dataset.taskId)"))
    assert drawn == sorted(task.task_id for task in tasks)
    expect(page.locator("#timeline rect.bar")).to_have_count(len(tasks))
    page.locator("#graph g.node", has_text="join").click()
    expect(page.locator("#logs h2")).to_contain_text("join")
    stack.shot(page, "run")


def test_resume_a_failed_run_after_fixing_its_cause(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    cause = tmp_path / "config.json"
    workflow_id = f"import-{uuid.uuid4().hex[:6]}"
    dag = flows.join.bind(flows.source.bind("fetch"), flows.needs_file.bind(str(cause), "parse"))
    with pytest.raises(WorkflowExecutionError):
        ray.get(stack.workflow.run_async(dag, workflow_id=workflow_id), timeout=60)

    page.goto(f"{stack.url}/runs/{workflow_id}")
    expect(page.locator("#run-header .status")).to_have_text("FAILED")
    expect(page.locator("#logs h2")).to_contain_text("needs_file")  # the failed task's logs
    expect(page.locator("#metadata")).to_contain_text("is missing")
    stack.shot(page, "run-failed")

    cause.write_text("{}")
    page.get_by_role("button", name="Resume").click()

    expect(page.locator(".flash")).to_contain_text("Resumed")
    expect(page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
    expect(page.locator("#graph g.node.status-SUCCESSFUL")).to_have_count(3)
    assert stack.workflow.get_output(workflow_id) == "fetch+parse"


def test_send_an_event_that_releases_a_waiting_run(stack: Stack, page: Page) -> None:
    workflow_id = f"approval-{uuid.uuid4().hex[:6]}"
    wait = stack.workflow.wait_for_event(stack.workflow.HTTPListener, event_key="approve")
    ref = stack.workflow.run_async(flows.show.bind(wait), workflow_id=workflow_id)

    page.goto(f"{stack.url}/runs/{workflow_id}")
    expect(page.locator("#events .waiting")).to_contain_text("WAITING")
    page.get_by_label("Event key").fill("approve")
    page.get_by_label("Payload (JSON)").fill('{"by": "ana",')
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid JSON")

    page.get_by_label("Payload (JSON)").fill('{"by": "ana", "approved": true}')
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
    assert ray.get(ref, timeout=30) == "('approve', {'by': 'ana', 'approved': True})"
    expect(page.locator("#events")).to_contain_text("by workflow.wait_for_event")  # consumed
    expect(page.locator("#send-event")).to_be_hidden()  # a finished run takes no more
    stack.shot(page, "run-event")


def test_trigger_a_schedule_with_params(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/schedules")
    row = page.locator(f"#schedule-{stack.nightly}")
    expect(row).to_contain_text("every day at 03:00 UTC")

    page.get_by_text(f"Trigger {stack.greet} now…").click()
    form = page.locator(f'form[action="/schedules/{stack.greet}/trigger"]')
    # A typed field from the params' inferred schema, with its default.
    who = form.locator('input[name="param.who"]')
    expect(who).to_have_value("world")
    params = form.locator('textarea[name="params"]')
    params.fill('{"who": ')
    # The browser checks the JSON box and will not send it.
    expect(params).to_have_attribute("title", re.compile("Not valid JSON"))
    form.locator("button").click()
    expect(page).to_have_url(re.compile("/schedules$"))

    params.fill("{}")
    who.fill("gnomes")
    form.locator("button").click()

    page.wait_for_url(f"{stack.url}/runs/{stack.greet}@**")
    expect(page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
    expect(page.locator("#metadata .output")).to_have_text("'GNOMES'")
    expect(page.locator("#metadata")).to_contain_text('"who": "gnomes"')


def test_trigger_with_typed_fields_and_a_recent_param_set(stack: Stack, page: Page) -> None:
    def open_form() -> Any:
        page.goto(f"{stack.url}/schedules")
        page.get_by_text(f"Trigger {stack.typed} now…").click()
        return page.locator(f'form[action="/schedules/{stack.typed}/trigger"]')

    def ran_with() -> dict[str, Any]:
        page.wait_for_url(f"{stack.url}/runs/{stack.typed}@**")
        expect(page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
        return json.loads(ast.literal_eval(page.locator("#metadata .output").inner_text()))

    # Given a schedule whose params schema has an integer, an enum, a date and a boolean
    form = open_form()
    batch = form.locator('input[name="param.batch"]')
    expect(batch).to_have_attribute("type", "number")
    expect(batch).to_have_value("10")
    expect(form).to_contain_text("rows per batch")
    expect(form.locator('input[name="param.day"]')).to_have_attribute("type", "date")

    # When a value below the minimum is entered, the browser refuses to send the form
    batch.fill("0")
    form.locator("button").click()
    expect(page).to_have_url(re.compile("/schedules$"))
    assert batch.evaluate("field => field.validity.rangeUnderflow") is True

    # When it is filled in properly, each field arrives typed
    batch.fill("25")
    form.locator('select[name="param.region"]').select_option(label="us")
    form.locator('input[name="param.day"]').fill("2026-03-04")
    form.locator('input[type="checkbox"][name="param.dry_run"]').check()
    form.locator("button").click()
    used = {"batch": 25, "day": "2026-03-04", "dry_run": True, "region": "us"}
    assert ran_with() == used

    # Then the next form offers that set, and choosing it fills every field again
    form = open_form()
    expect(form.locator('input[name="param.batch"]')).to_have_value("10")
    form.locator("select.recent-params").select_option(index=1)
    expect(form.locator('input[name="param.batch"]')).to_have_value("25")
    expect(form.locator('select[name="param.region"]')).to_have_value('"us"')
    expect(form.locator('input[name="param.day"]')).to_have_value("2026-03-04")
    expect(form.locator('input[type="checkbox"][name="param.dry_run"]')).to_be_checked()
    form.locator("button").click()
    assert ran_with() == used


def test_pause_a_schedule(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/schedules")
    row = page.locator(f"#schedule-{stack.nightly}")
    expect(row.locator(".tag")).to_have_text("active")
    stack.shot(page, "schedules")

    row.get_by_role("button", name="Pause").click()

    expect(page.locator(f"#schedule-{stack.nightly} .tag")).to_have_text("paused")
    assert stack.service.schedule(stack.nightly).paused
    page.locator(f"#schedule-{stack.nightly}").get_by_role("button", name="Unpause").click()
    expect(page.locator(f"#schedule-{stack.nightly} .tag")).to_have_text("active")
    assert not stack.service.schedule(stack.nightly).paused


def test_pages_fit_a_phone(stack: Stack) -> None:
    context = stack.browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    tab = context.new_page()
    tab.goto(f"{stack.url}/?token={TOKEN}")
    expect(tab.get_by_role("heading", name="Runs")).to_be_visible()
    width = tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the runs page scrolls sideways on a phone ({width}px)"
    stack.shot(tab, "runs-phone")
    first_run = tab.locator("#run-rows td.id a").first
    first_run.click()
    expect(tab.locator("#run-header .status")).to_be_visible()
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    stack.shot(tab, "run-phone")
    context.close()


def test_runs_list_and_a_large_run(stack: Stack, page: Page) -> None:
    workflow_id = f"backfill-{uuid.uuid4().hex[:6]}"
    rows = [NewTask(f"etl.extract_{i}", "etl.extract", [], {}) for i in range(400)]
    rows += [NewTask(f"etl.load_{i}", "etl.load", [f"etl.extract_{i}"], {}) for i in range(400)]
    rows.append(NewTask("etl.report", "etl.report", [f"etl.load_{i}" for i in range(400)], {}))
    stack.store.create_workflow(workflow_id, "backfill", None, None, "etl.report", rows, {})
    for i in range(0, 400, 7):
        stack.store.tasks_started(workflow_id, [(f"etl.extract_{i}", time.time() - 30 + i / 20)])

    page.goto(f"{stack.url}/")
    shown = page.locator("#run-rows tr").evaluate_all("rows => rows.map(r => r.dataset.workflowId)")
    newest = [record.workflow_id for record in stack.store.list_workflows(limit=len(shown))]
    assert shown == newest
    assert shown[0] == workflow_id
    finished = page.locator(f'tr[data-workflow-id="{shown[1]}"] a').element_handle()
    page.wait_for_timeout(2500)  # two live updates
    assert finished.evaluate("link => link.isConnected"), "an unchanged row was replaced"
    stack.shot(page, "runs")

    page.get_by_role("link", name=workflow_id).click()
    groups = page.locator("#graph svg g.node")
    expect(groups).to_have_count(3)
    expect(page.locator("#graph .legend")).to_have_text("801 tasks, drawn as 3 groups by function.")
    expect(groups.filter(has_text="extract ×400")).to_have_class("node status-RUNNING")
    stack.shot(page, "run-large", full_page=False)


DAGS_FILE = """
import ray
import scheduler


@ray.remote
def hello(who: str) -> str:
    return f"hello {who}"


@scheduler.register(name="NAME", params={"who": "world"})
def hello_flow(run):
    return hello.bind(run.params["who"])
"""


def _read_until(
    process: subprocess.Popen, marker: str, lines: queue.Queue, timeout: float = 120
) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith(marker):
            return line[len(marker) :].strip()
    raise AssertionError(f"no {marker!r} line from gnomon up:\n{''.join(seen)[-3000:]}")


def test_gnomon_up_prints_a_login_url_that_opens_the_dashboard(
    stack: Stack, ray_address: str, tmp_path: Path
) -> None:
    # Given a dags folder with one good and one broken file, and no token configured
    name = f"hello_{uuid.uuid4().hex[:6]}"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "hello.py").write_text(DAGS_FILE.replace("NAME", name))
    (dags / "broken.py").write_text("broken(\n")
    env = {key: value for key, value in os.environ.items() if key != "GNOMON_API_TOKEN"}
    env["GNOMON_HOME"] = str(tmp_path / "home")
    gnomon = Path(sys.executable).with_name("gnomon")
    command = [
        str(gnomon),
        "up",
        "--dags",
        str(dags),
        "--port",
        "0",
        "--ray-address",
        ray_address,
        "--database-url",
        f"sqlite:///{tmp_path / 'up.db'}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout],  # type: ignore[union-attr]
        daemon=True,
    ).start()
    context = stack.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        # When it is up, its printed login URL opens the dashboard
        login_url = _read_until(process, "Dashboard:", lines)
        token_file = tmp_path / "home" / "api_token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert login_url.endswith(f"/?token={token_file.read_text().strip()}")
        tab = context.new_page()
        tab.goto(login_url)
        expect(tab.get_by_role("heading", name="Runs")).to_be_visible()

        # Then its schedules page shows the dags folder, broken file included, and runs it
        tab.get_by_role("link", name="Schedules").click()
        expect(tab.locator(".problems")).to_contain_text("broken.py")
        tab.get_by_text(f"Trigger {name} now…").click()
        tab.locator(f'form[action="/schedules/{name}/trigger"] textarea').fill('{"who": "up"}')
        tab.locator(f'form[action="/schedules/{name}/trigger"] button').click()
        expect(tab.locator("#run-header .status")).to_have_text("SUCCESSFUL")
        expect(tab.locator("#metadata .output")).to_have_text("'hello up'")
    finally:
        context.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0


def test_a_lost_database_shows_a_banner_until_it_is_back(stack: Stack, monkeypatch) -> None:
    import sqlalchemy as sa

    context = stack.browser.new_context(viewport={"width": 1280, "height": 700})
    tab = context.new_page()
    tab.set_default_timeout(LIVE_TIMEOUT)
    tab.goto(f"{stack.url}/?token={TOKEN}")
    expect(tab.get_by_role("heading", name="Runs")).to_be_visible()
    rows = tab.locator("#run-rows tr").count()
    tab.evaluate("window.stillTheSamePage = true")
    banner = tab.locator("#unavailable")
    expect(banner).to_be_hidden()

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    # The runs list's poll now fails the way a restarting PostgreSQL makes it fail
    monkeypatch.setattr(stack.store, "list_workflows", lost)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Database unavailable")
    expect(tab.locator("#run-rows tr")).to_have_count(rows)  # the list stays as it was
    stack.shot(tab, "database-unavailable", full_page=False)

    monkeypatch.undo()
    expect(banner).to_be_hidden()
    assert tab.evaluate("window.stillTheSamePage") is True
    context.close()
