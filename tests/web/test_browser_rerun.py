"""Chromium retries a failed registered run with fixed code, clears a task and forks."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from executor.status import WorkflowStatus
from scheduler.loader import DagsFolder
from scheduler.registry import Registry
from tests.scheduler.registered import BUG, FIX, counts, write_dags
from tests.waiting import eventually
from tests.web.test_browser import Stack, page, stack  # noqa: F401 (fixtures)


@pytest.fixture
def registered(stack: Stack, dags, marks):  # noqa: F811 (a fixture)
    """The four-task workflow, loaded from ``dags`` into the dashboard's scheduler."""
    name = f"four_{uuid.uuid4().hex[:6]}"
    write_dags(dags, marks, name, BUG)
    registry: Registry = stack.service.registry
    folder = DagsFolder(dags, registry)
    folder.refresh()
    stack.service.sync()
    yield name, folder
    stack.service.remove(name)
    registry.remove(name)


def test_retry_with_current_code_then_clear_and_fork(
    stack: Stack,  # noqa: F811 (a fixture)
    page: Page,  # noqa: F811 (a fixture)
    registered,
    dags,
    marks,
) -> None:
    name, folder = registered
    workflow_id = stack.service.trigger(name)
    eventually(
        lambda: stack.workflow.get_status(workflow_id) == WorkflowStatus.FAILED, 60, "a failure"
    )
    page.goto(f"{stack.url}/runs/{workflow_id}")
    header = page.locator("#run-header")
    expect(header.locator(".status")).to_have_text("FAILED")
    expect(header.locator(".actions button").first).to_have_text("Retry with current code")

    write_dags(dags, marks, name, FIX)  # the operator fixes the bug; gnomon up reloads
    folder.refresh()
    page.reload()
    expect(header).to_contain_text("(changed since)")
    header.get_by_role("button", name="Retry with current code").click()
    dialog = page.locator("#rerun-dialog")
    tasks = dialog.get_by_role("list", name="Tasks that will run").get_by_role("listitem")
    expect(tasks).to_have_text(["third", "step_2"])
    stack.shot(page, "run-retry-dialog")
    dialog.get_by_role("button", name="Retry", exact=True).click()

    expect(page.locator(".flash")).to_contain_text("Retrying with current code")
    expect(header.locator(".status")).to_have_text("SUCCESSFUL")
    assert stack.workflow.get_output(workflow_id) == 21
    assert counts(marks) == [1, 1, 2, 1]
    expect(header).not_to_contain_text("(changed since)")
    third = page.locator("#tasks tr", has_text="third")
    expect(third.locator("details.earlier > summary")).to_have_text("1 earlier")
    expect(third.locator("details.earlier li")).to_contain_text("ValueError: the bug")
    stack.shot(page, "run-retried")

    page.locator("#tasks tr", has_text="step_1").get_by_role("button", name="Clear").click()
    expect(tasks).to_have_text(["step_1", "third", "step_2"])
    dialog.get_by_label("With everything downstream of it").uncheck()
    expect(tasks).to_have_text(["step_1"])
    dialog.get_by_role("button", name="Clear and run again").click()
    expect(page.locator(".flash")).to_contain_text("Cleared")
    eventually(lambda: counts(marks) == [1, 2, 2, 1], 60, "step_1 to run again alone")
    expect(header.locator(".status")).to_have_text("SUCCESSFUL")

    page.locator("#tasks tr", has_text="step_2").get_by_role(
        "button", name="Fork from here"
    ).click()
    expect(tasks).to_have_text(["step_2"])
    dialog.get_by_role("button", name="Start the fork").click()
    page.wait_for_url(f"{stack.url}/runs/{workflow_id}~fork1")
    expect(header).to_contain_text(f"forked from {workflow_id}")
    eventually(lambda: counts(marks) == [1, 2, 2, 2], 60, "the fork to run step_2")
    expect(header.locator(".status")).to_have_text("SUCCESSFUL")

    version = stack.store.get_workflow(workflow_id).code_version
    header.get_by_role("link", name=version).click()  # every run of this code version
    expect(page.get_by_label("Code")).to_have_value(version)
    listed = page.locator("#run-rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.workflowId)"
    )
    assert sorted(listed) == [workflow_id, f"{workflow_id}~fork1"]
