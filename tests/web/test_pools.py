"""Pools through the REST API and the Pools page; controls on the run page and /metrics.
Runs are seeded straight into the store (no Ray runs them)."""

from __future__ import annotations

import time
import uuid

import pytest

from executor.status import WorkflowStatus
from executor.store import Rate, owner_id
from tests.web.conftest import csrf_of, seed


@pytest.fixture
def pool() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def test_put_creates_and_changes_a_pool(api, pool):
    created = api.put(f"/api/v1/pools/{pool}", json={"slots": 3, "rate": "5/s"})
    assert created.status_code == 200
    assert created.json == {
        "name": pool,
        "slots": 3,
        "rate": {"limit": 5, "period_s": 1.0},
        "rate_text": "5/s",
        "used": 0,
        "queued": 0,
    }
    # What is left out is kept; a null rate removes it.
    assert api.put(f"/api/v1/pools/{pool}", json={"slots": 0}).json["rate_text"] == "5/s"
    assert api.put(f"/api/v1/pools/{pool}", json={"rate": None}).json["rate"] is None
    assert api.get(f"/api/v1/pools/{pool}").json["slots"] == 0
    assert pool in [item["name"] for item in api.get("/api/v1/pools").json]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"slots": -1}, "slots must be from 0"),
        ({"slots": 2, "rate": "0/s"}, "Invalid rate '0/s'"),
        ({"slots": "two"}, "slots must be an integer"),
        ({"slots": 2, "size": 9}, "Unknown field(s) size"),
        ({"rate": "5/s"}, "does not exist yet: give it slots"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_pool_changes_are_400s(api, pool, body, message):
    response = api.put(f"/api/v1/pools/{pool}", json=body)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_pool_names_and_missing_pools(api, pool):
    bad = api.put("/api/v1/pools/ware%20house", json={"slots": 1})
    assert bad.status_code == 400
    assert "Invalid pool name 'ware house'" in bad.json["error"]
    missing = api.get(f"/api/v1/pools/{pool}")
    assert missing.status_code == 404
    assert missing.json == {
        "error": f"No pool {pool!r}; create it with `gnomon pool set {pool} --slots N`"
    }


def test_the_pools_page_lists_and_saves_pools(browser, store, pool):
    page = browser.get("/pools")
    assert page.status_code == 200
    saved = browser.post(
        "/pools",
        data={"name": pool, "slots": "2", "rate": "10/min", "csrf_token": csrf_of(page.text)},
    )
    assert saved.status_code == 302
    assert store.get_pool(pool).rate == Rate(limit=10, period_s=60.0)
    listed = browser.get("/pools").text
    assert f'id="pool-{pool}"' in listed
    assert "0 of 2" in listed
    refused = browser.post(
        "/pools",
        data={"name": pool, "slots": "2", "rate": "fast", "csrf_token": csrf_of(listed)},
    )
    assert refused.status_code == 400
    assert "Invalid rate &#39;fast&#39;" in refused.text


def test_the_run_page_shows_each_tasks_pool_and_wait(browser, store, pool, workflow_id):
    # Given a run whose first task is retrying, second queued, and third waited
    store.set_pool(pool, 0, None)
    seed(store, workflow_id, WorkflowStatus.RUNNING)
    first, second, third = (t.task_id for t in store.load_tasks(workflow_id))
    now = time.time()
    store.task_backoff(workflow_id, first, "ConnectionError: down", now - 1, 1, now + 12, 3, 5)
    store.queue_for_slot(pool, f"other-{workflow_id}", "t", 0, owner_id("web"), 30)
    store.queue_for_slot(pool, workflow_id, second, 0, owner_id("web"), 30)
    store.set_pool(pool, 1, None)
    store.queue_for_slot(pool, workflow_id, third, 9, owner_id("web"), 30)
    assert store.grant_slots(pool, owner_id("web"), 30)[0] == [(workflow_id, third)]

    # Then the task table says what each waits for
    text = " ".join(browser.get(f"/runs/{workflow_id}").text.split())
    assert "retrying in 1" in text  # "in 11.9 s" or so
    assert "(attempt 3 of 5)" in text
    assert f"queued for pool {pool} (1 ahead)" in text
    store.release_slots(workflow_id)
    store.release_slots(f"other-{workflow_id}")


def test_metrics_count_pools_timeouts_and_retries(api, store, pool):
    store.set_pool(pool, 4, None)
    store.try_slot(pool, "w", "t", 0, owner_id("metrics"), 30)
    before = _counter(api, "gnomon_task_retries_total")
    store.count({"task_retries": 2, "task_timeouts": 1})
    text = api.get("/metrics").text
    assert f'gnomon_pool_slots{{pool="{pool}"}} 4.0' in text
    assert f'gnomon_pool_slots_used{{pool="{pool}"}} 1.0' in text
    assert f'gnomon_pool_queued{{pool="{pool}"}} 0.0' in text
    assert _counter(api, "gnomon_task_retries_total") == before + 2
    assert "gnomon_task_timeouts_total" in text
    store.release_slot(pool, "w", "t")


def _counter(api, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
