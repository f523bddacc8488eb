"""The runs list: cursors, filters, and status filters that stay cheap at 100,000 runs."""

from __future__ import annotations

from collections import Counter

import pytest

from executor.status import WorkflowStatus
from executor.store import WorkflowRecord
from web.errors import BadRequest
from web.listing import RunQuery, decode_cursor, encode_cursor


def _record(
    created_at: float, workflow_id: str, status: WorkflowStatus = WorkflowStatus.SUCCESSFUL
) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=workflow_id,
        name="n",
        status=status,
        trigger="manual",
        user_metadata={},
        output_task_id=None,
        output_preview=None,
        error=None,
        created_at=created_at,
        started_at=None,
        ended_at=None,
        owner=None,
        lease_expires_at=None,
    )


def test_cursor_round_trips_the_exact_keyset() -> None:
    created_at = 1764039612.123456789
    cursor = encode_cursor(_record(created_at, "nightly@2026-11-25T03:00:00Z"))
    assert decode_cursor(cursor) == (created_at, "nightly@2026-11-25T03:00:00Z")


@pytest.mark.parametrize("cursor", ["not base64!", "WzEsMl0", "e30", "bnVsbA", "WyJ4IiwieSJd"])
def test_malformed_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequest):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    "args",
    [{"status": "DONE"}, {"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"cursor": "%%%"}],
)
def test_bad_list_filters_are_bad_requests(args: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        RunQuery.from_args(args)


def test_list_filters_read_statuses_in_any_case() -> None:
    query = RunQuery.from_args({"status": "failed,Resumable", "name": " etl ", "limit": "20"})
    assert query.statuses == (WorkflowStatus.FAILED, WorkflowStatus.RESUMABLE)
    assert query.name == "etl"
    assert query.args() == {"status": "FAILED,RESUMABLE", "name": "etl", "limit": "20"}


class MemoryStore:
    """``list_workflows`` as the SQL store behaves, counting the rows each call reads."""

    def __init__(self, records: list[WorkflowRecord]) -> None:
        self.records = sorted(records, key=lambda r: (r.created_at, r.workflow_id), reverse=True)
        self.read = 0

    def count_by_status(self) -> dict[str, int]:
        return dict(Counter(record.status.value for record in self.records))

    def list_workflows(
        self, statuses=None, name=None, limit=None, before=None, id_prefix=None, code_version=None
    ):
        rows = [r for r in self.records if before is None or (r.created_at, r.workflow_id) < before]
        if code_version:
            rows = [r for r in rows if r.code_version == code_version]
        if statuses is not None:  # the store reads every row of the statuses, then limits
            rows = [r for r in rows if r.status in statuses]
            self.read += len(rows)
            return rows[:limit]
        self.read += len(rows[:limit])
        return rows[:limit]


def _runs(count: int, every: int, rare: WorkflowStatus) -> list[WorkflowRecord]:
    return [
        _record(float(i), f"w{i:05d}", rare if i % every == 0 else WorkflowStatus.SUCCESSFUL)
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("status", "every"),
    [("SUCCESSFUL", 17), ("FAILED", 17), ("FAILED", 2), ("CANCELED", 1000), ("RUNNING", 3)],
)
def test_status_pages_match_the_store_filter_and_read_few_rows(status: str, every: int) -> None:
    runs = _runs(6000, every, WorkflowStatus(status.replace("SUCCESSFUL", "FAILED")))
    expected = [r.workflow_id for r in runs[::-1] if r.status.value == status]
    store = MemoryStore(runs)

    shown: list[str] = []
    cursor = None
    for _ in range(3):
        query = RunQuery.from_args({"status": status, "limit": "20", "cursor": cursor or ""})
        page, cursor = query.fetch(store)  # type: ignore[arg-type]
        shown.extend(record.workflow_id for record in page)
        if cursor is None:
            break

    assert shown == expected[:60]
    assert store.read <= 3 * 2600, f"read {store.read} rows for 3 pages"
