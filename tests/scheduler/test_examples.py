"""The bundled examples run end to end (``gnomon up --examples`` schedules these)."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import pytest

from executor.status import WorkflowStatus
from scheduler.loader import EXAMPLES_DIR, load_dags
from scheduler.registry import Registry
from scheduler.runs import RunLauncher
from tests.waiting import eventually

OK = WorkflowStatus.SUCCESSFUL
LOGICAL = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def examples() -> Registry:
    registry = Registry()
    assert load_dags(EXAMPLES_DIR, registry).errors == {}
    return registry


@pytest.fixture
def run_example(workflow, store, examples):
    """Start an example by hand and return its output once it finished."""
    launcher = RunLauncher(store)

    def run(name, params=None, wait=True):
        workflow_id = launcher.launch(
            examples.get(name), datetime.now(timezone.utc), params, trigger="manual"
        )
        if not wait:
            return workflow_id
        assert workflow.wait_for_completion(workflow_id, timeout=60) == OK
        return workflow.get_output(workflow_id)

    return run


def test_nightly_etl_loads_the_day_before(examples, run_example, workflow, store, tmp_path):
    launcher = RunLauncher(store)

    workflow_id = launcher.launch(
        examples.get("nightly_etl"), LOGICAL, {"orders": 50, "output_dir": str(tmp_path)}
    )

    assert workflow.wait_for_completion(workflow_id, timeout=60) == OK
    summary = workflow.get_output(workflow_id)
    assert summary["day"] == "2026-03-01"
    assert 0 < summary["orders"] <= 50
    assert json.loads((tmp_path / "2026-03-01.json").read_text()) == summary
    # A bad day is the trigger's error, not a failed task.
    with pytest.raises(ValueError, match="'yesterday'"):
        run_example("nightly_etl", {"day": "yesterday"})


def test_health_check_reports_failing_targets(run_example):
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))
        up = f"127.0.0.1:{listening.getsockname()[1]}"
        down = f"127.0.0.1:{closed.getsockname()[1]}"

        result = run_example("health_check", {"targets": [up, down], "timeout": 1.0})

    assert result["healthy"] is False
    assert result["failing"] == [down]
    assert [probe["ok"] for probe in result["results"]] == [True, False, True]


def test_fanout_report_gathers_every_region(run_example, store):
    report = run_example("fanout_report", {"regions": ["eu", "us", "apac"], "samples": 200})
    assert sorted(report["regions"]) == ["apac", "eu", "us"]
    assert report["requests"] == 600
    assert report["worst_p99"]["ms"] == max(r["p99_ms"] for r in report["regions"].values())


def test_paginated_sync_continues_page_by_page(run_example, store):
    result = run_example("paginated_sync", {"page_size": 50, "total": 120})
    assert result["synced"] == 120
    assert result["pages"] == 3


def test_approval_flow_waits_for_the_approval(run_example, workflow):
    workflow_id = run_example("approval_flow", {"change": "rotate keys"}, wait=False)
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.RUNNING, timeout=30)
    assert workflow.get_status(workflow_id) == WorkflowStatus.RUNNING

    workflow.send_event(workflow_id, "approve", {"by": "ana", "approved": True})

    eventually(lambda: workflow.get_status(workflow_id) == OK, timeout=30, what="the approval")
    assert workflow.get_output(workflow_id) == {
        "change": "rotate keys",
        "applied": True,
        "by": "ana",
        "steps": ["check rotate keys", "apply rotate keys", "verify"],
    }
