"""Chromium pauses a pool on the Pools page, watches a task queue for it on its run's
page, and lets it run by giving the pool a slot."""

from __future__ import annotations

import uuid

import ray
from playwright.sync_api import Page, expect

from tests.web import flows
from tests.web.test_browser import Stack, page, stack  # noqa: F401 (fixtures)


def test_a_paused_pool_holds_a_task_until_it_gets_a_slot(
    stack: Stack,  # noqa: F811 (a fixture)
    page: Page,  # noqa: F811 (a fixture)
) -> None:
    pool = f"warehouse-{uuid.uuid4().hex[:6]}"
    # Given a pool created paused on the Pools page
    page.goto(f"{stack.url}/pools")
    create = page.locator("section", has_text="Create or change a pool")
    create.get_by_label("Name").fill(pool)
    create.get_by_label("Slots").fill("0")
    create.get_by_label("Rate").fill("10/min")
    create.get_by_role("button", name="Save pool").click()
    row = page.locator(f"#pool-{pool}")
    expect(row.locator(".used")).to_have_text("0 of 0")
    expect(row.locator(".tag")).to_have_text("paused")
    expect(row.locator(".rate")).to_have_text("10/min")

    # When a run's task asks for a slot, it queues, and its run page says so
    workflow_id = f"pooled-{uuid.uuid4().hex[:6]}"
    task = flows.shout.options(**stack.workflow.options(pool=pool)).bind("stocked")
    ref = stack.workflow.run_async(task, workflow_id=workflow_id)
    run_page = page.context.new_page()
    run_page.goto(f"{stack.url}/runs/{workflow_id}")
    expect(run_page.locator("#tasks")).to_contain_text(f"queued for pool {pool} (0 ahead)")
    expect(run_page.locator("#tasks .status")).to_have_text("QUEUED")
    stack.shot(run_page, "run-queued-for-a-pool")
    page.reload()
    expect(row.locator(".queued")).to_have_text("1")
    stack.shot(page, "pools")

    # Then a slot given on the Pools page lets it run, and the run page shows its wait
    row.get_by_label("Slots").fill("1")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_have_text(f"Saved pool {pool}.")
    assert ray.get(ref, timeout=60) == "STOCKED"
    expect(run_page.locator("#run-header .status")).to_have_text("SUCCESSFUL")
    expect(run_page.locator("#tasks")).to_contain_text(f"pool {pool}, waited")
