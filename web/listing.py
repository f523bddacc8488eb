"""The runs list: filters from a query string, and keyset pagination over the store.

The cursor is the (created_at, workflow_id) of the last row shown, so every page is one
indexed range read, however deep; an offset would read and skip every row before it.

A status filter is the exception: ``SqlStore.list_workflows(statuses=...)`` reads every
row of those statuses before it applies ``limit`` (a dead owner's RUNNING row must read
RESUMABLE), which at 90,000 SUCCESSFUL runs takes seconds. For the statuses a row cannot
change by being read (SUCCESSFUL, FAILED, CANCELED) the list instead walks the unfiltered
newest-first index when that reads fewer rows, as ``count_by_status`` tells. Either way a
page reads at most about sqrt(limit x runs) rows.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from executor.status import WorkflowStatus
from executor.store import SqlStore, WorkflowRecord
from web.errors import BadRequest

#: Rows per page unless ``limit`` says otherwise.
PAGE_SIZE = 50
#: The most rows one request may ask for.
MAX_LIMIT = 500
#: Statuses stored as they read; the others may be a RUNNING or PENDING row whose owner died.
_STORED_AS_READ = frozenset(
    {WorkflowStatus.SUCCESSFUL, WorkflowStatus.FAILED, WorkflowStatus.CANCELED}
)
#: Rows per read when walking the index for a status, and the most reads before giving up.
SCAN_CHUNK = 500
SCAN_READS = 10


def encode_cursor(record: WorkflowRecord) -> str:
    raw = json.dumps([record.created_at, record.workflow_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, workflow_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise BadRequest(f"Malformed cursor {text[:80]!r}") from None
    valid_time = isinstance(created_at, (int, float)) and not isinstance(created_at, bool)
    if not valid_time or not isinstance(workflow_id, str):
        raise BadRequest(f"Malformed cursor {text[:80]!r}")
    try:
        moment = float(created_at)
    except OverflowError:  # an integer past float's range
        raise BadRequest(f"Malformed cursor {text[:80]!r}") from None
    if not math.isfinite(moment):
        raise BadRequest(f"Malformed cursor {text[:80]!r}")
    return moment, workflow_id


def parse_statuses(text: str) -> tuple[WorkflowStatus, ...]:
    """``FAILED`` or ``failed,resumable``."""
    statuses = []
    for part in text.split(","):
        part = part.strip().upper()
        try:
            statuses.append(WorkflowStatus(part))
        except ValueError:
            names = ", ".join(s.value for s in WorkflowStatus)
            raise BadRequest(f"Unknown status {part!r}; use one of {names}") from None
    return tuple(statuses)


@dataclass(frozen=True)
class RunQuery:
    statuses: tuple[WorkflowStatus, ...] | None = None
    name: str | None = None
    id_prefix: str | None = None
    code: str | None = None
    cursor: str | None = None
    limit: int = PAGE_SIZE

    @staticmethod
    def from_args(args: Mapping[str, str]) -> RunQuery:
        """Read ``status``, ``name``, ``q`` (an id prefix), ``code`` (a code version),
        ``cursor`` and ``limit``."""
        status = (args.get("status") or "").strip()
        limit_text = (args.get("limit") or "").strip()
        limit = PAGE_SIZE
        if limit_text:
            # int() refuses digits such as '²' (isdigit but not isdecimal), and 4,300+ digits.
            digits = limit_text.isdecimal() and len(limit_text) <= 9
            if not digits or not 1 <= int(limit_text) <= MAX_LIMIT:
                raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
            limit = int(limit_text)
        cursor = (args.get("cursor") or "").strip() or None
        if cursor:
            decode_cursor(cursor)
        return RunQuery(
            statuses=parse_statuses(status) if status else None,
            name=(args.get("name") or "").strip() or None,
            id_prefix=(args.get("q") or "").strip() or None,
            code=(args.get("code") or "").strip() or None,
            cursor=cursor,
            limit=limit,
        )

    def fetch(self, store: SqlStore) -> tuple[list[WorkflowRecord], str | None]:
        """One page, newest first, and the cursor of the next page (None on the last)."""
        records = self._scan(store) if self._scan_is_cheaper(store) else None
        if records is None:
            records = store.list_workflows(
                statuses=list(self.statuses) if self.statuses else None,
                name=self.name,
                limit=self.limit + 1,
                before=decode_cursor(self.cursor) if self.cursor else None,
                id_prefix=self.id_prefix,
                code_version=self.code,
            )
        if len(records) <= self.limit:
            return records, None
        page = records[: self.limit]
        return page, encode_cursor(page[-1])

    def _scan_is_cheaper(self, store: SqlStore) -> bool:
        """Walking the index reads about ``limit / share`` rows, the filter ``matching``."""
        if not self.statuses or not set(self.statuses) <= _STORED_AS_READ:
            return False
        counts = store.count_by_status()
        matching = sum(counts.get(status.value, 0) for status in self.statuses)
        return matching * matching > (self.limit + 1) * sum(counts.values())

    def _scan(self, store: SqlStore) -> list[WorkflowRecord] | None:
        """The page from the unfiltered index; None if the status turned out rare here."""
        wanted = set(self.statuses or ())
        found: list[WorkflowRecord] = []
        before = decode_cursor(self.cursor) if self.cursor else None
        for _ in range(SCAN_READS):
            rows = store.list_workflows(
                name=self.name,
                id_prefix=self.id_prefix,
                code_version=self.code,
                limit=SCAN_CHUNK,
                before=before,
            )
            found.extend(record for record in rows if record.status in wanted)
            if len(found) > self.limit or len(rows) < SCAN_CHUNK:
                return found[: self.limit + 1]
            before = (rows[-1].created_at, rows[-1].workflow_id)
        return None

    def args(self, **changes: object) -> dict[str, str]:
        """The query string that asks for this query (with ``changes``), for links."""
        query = replace(self, **changes)  # type: ignore[arg-type]
        found = {
            "status": ",".join(s.value for s in query.statuses) if query.statuses else "",
            "name": query.name or "",
            "q": query.id_prefix or "",
            "code": query.code or "",
            "cursor": query.cursor or "",
            "limit": str(query.limit) if query.limit != PAGE_SIZE else "",
        }
        return {key: value for key, value in found.items() if value}

    @property
    def filtered(self) -> bool:
        return bool(self.statuses or self.name or self.id_prefix or self.code)
