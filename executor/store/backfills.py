"""The store's part for backfills: a schedule's ticks over a range, run as one operation.

A backfill is a row and its ticks, each a run id in the order they start. Progress is read
from the ticks joined to their runs, so it is never stale and needs no bookkeeping when a
run ends. The scheduler that drives a backfill holds a lease on it, as an owner holds a
workflow's: two replicas never start its ticks at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from executor.status import WorkflowStatus
from executor.store.core import SqlCore
from executor.store.records import BackfillProgress, BackfillRecord, dump_json

#: A backfill's states.
RUNNING, PAUSED, CANCELING, CANCELED, DONE = "running", "paused", "canceling", "canceled", "done"
#: A tick's states: to create, to resume (it failed before), started, or left alone.
QUEUED, RERUN, STARTED, SKIPPED = "queued", "rerun", "started", "skipped"
#: States a scheduler drives.
DRIVEN = (RUNNING, CANCELING)
#: Ids per IN list when looking up a range's existing runs.
_CHUNK = 500


class BackfillStore(SqlCore):
    def create_backfill(
        self,
        name: str,
        workflow_ids: Sequence[str],
        start_at: float,
        end_at: float,
        params: dict[str, Any],
        max_active: int | None,
        rerun_failed: bool,
    ) -> BackfillRecord:
        b, ticks, w = self.tables.backfills, self.tables.backfill_ticks, self.tables.workflows
        backfill_id = f"{name[:40]}-{uuid.uuid4().hex[:12]}"

        def write() -> None:
            with self._write() as conn:
                existing: dict[str, str] = {}
                for i in range(0, len(workflow_ids), _CHUNK):
                    chunk = list(workflow_ids[i : i + _CHUNK])
                    rows = conn.execute(
                        sa.select(w.c.workflow_id, w.c.status).where(w.c.workflow_id.in_(chunk))
                    )
                    existing.update({row.workflow_id: row.status for row in rows})
                conn.execute(
                    b.insert().values(
                        backfill_id=backfill_id,
                        name=name,
                        state=RUNNING,
                        params=dump_json(params),
                        max_active=max_active,
                        rerun_failed=rerun_failed,
                        start_at=start_at,
                        end_at=end_at,
                        created_at=self.clock(),
                    )
                )
                if workflow_ids:
                    conn.execute(
                        ticks.insert(),
                        [
                            {
                                "backfill_id": backfill_id,
                                "seq": seq,
                                "workflow_id": workflow_id,
                                "state": _first_state(existing.get(workflow_id), rerun_failed),
                            }
                            for seq, workflow_id in enumerate(workflow_ids)
                        ],
                    )

        self._retrying(write)
        found = self.get_backfill(backfill_id)
        assert found is not None
        return found

    def get_backfill(self, backfill_id: str) -> BackfillRecord | None:
        b = self.tables.backfills
        with self._read() as conn:
            row = conn.execute(sa.select(b).where(b.c.backfill_id == backfill_id)).first()
            if row is None:
                return None
            return _backfill(row, self._progress(conn, [backfill_id]).get(backfill_id))

    def list_backfills(self, name: str | None = None, limit: int = 100) -> list[BackfillRecord]:
        b = self.tables.backfills
        query = sa.select(b).order_by(b.c.created_at.desc(), b.c.backfill_id.desc()).limit(limit)
        if name:
            query = query.where(b.c.name == name)
        with self._read() as conn:
            rows = conn.execute(query).all()
            progress = self._progress(conn, [row.backfill_id for row in rows])
            return [_backfill(row, progress.get(row.backfill_id)) for row in rows]

    def _progress(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, BackfillProgress]:
        if not ids:
            return {}
        ticks, w = self.tables.backfill_ticks, self.tables.workflows
        rows = conn.execute(
            sa.select(ticks.c.backfill_id, ticks.c.state, w.c.status, sa.func.count())
            .join_from(ticks, w, w.c.workflow_id == ticks.c.workflow_id, isouter=True)
            .where(ticks.c.backfill_id.in_(list(ids)))
            .group_by(ticks.c.backfill_id, ticks.c.state, w.c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        for backfill_id, state, status, count in rows:
            tally = counts.setdefault(backfill_id, {})
            bucket = _bucket(state, status)
            tally[bucket] = tally.get(bucket, 0) + int(count)
            tally["total"] = tally.get("total", 0) + int(count)
        return {key: BackfillProgress(**tally) for key, tally in counts.items()}

    def set_backfill_state(
        self, backfill_id: str, state: str, allowed_from: Sequence[str]
    ) -> BackfillRecord | None:
        b = self.tables.backfills
        done = state in (CANCELED, DONE)

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    b.update()
                    .where(b.c.backfill_id == backfill_id, b.c.state.in_(list(allowed_from)))
                    .values(state=state, ended_at=self.clock() if done else None)
                )

        self._retrying(write)
        return self.get_backfill(backfill_id)

    def claim_backfills(self, owner: str, names: Sequence[str], ttl: float) -> list[BackfillRecord]:
        if not names:
            return []
        b = self.tables.backfills

        def claim() -> list[str]:
            now = self.clock()
            with self._write() as conn:
                conn.execute(
                    b.update()
                    .where(b.c.state.in_(DRIVEN), b.c.name.in_(list(names)))
                    .where(
                        sa.or_(b.c.owner.is_(None), b.c.owner == owner, b.c.lease_expires_at < now)
                    )
                    .values(owner=owner, lease_expires_at=now + ttl)
                )
                return list(
                    conn.execute(
                        sa.select(b.c.backfill_id).where(b.c.owner == owner, b.c.state.in_(DRIVEN))
                    ).scalars()
                )

        claimed = self._retrying(claim)
        records = [self.get_backfill(backfill_id) for backfill_id in claimed]
        return [record for record in records if record is not None]

    def backfill_ticks(
        self, backfill_id: str, states: Sequence[str], limit: int | None = None
    ) -> list[tuple[int, str, str]]:
        ticks = self.tables.backfill_ticks
        query = (
            sa.select(ticks.c.seq, ticks.c.workflow_id, ticks.c.state)
            .where(ticks.c.backfill_id == backfill_id, ticks.c.state.in_(list(states)))
            .order_by(ticks.c.seq)
        )
        with self._read() as conn:
            rows = conn.execute(query if limit is None else query.limit(limit))
            return [(row.seq, row.workflow_id, row.state) for row in rows]

    def backfill_active(self, backfill_id: str) -> list[str]:
        ticks, w = self.tables.backfill_ticks, self.tables.workflows
        active = [WorkflowStatus.RUNNING.value, WorkflowStatus.PENDING.value]
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(ticks.c.workflow_id)
                    .join_from(ticks, w, w.c.workflow_id == ticks.c.workflow_id)
                    .where(ticks.c.backfill_id == backfill_id, ticks.c.state == STARTED)
                    .where(w.c.status.in_(active))
                ).scalars()
            )

    def backfill_tick_done(self, backfill_id: str, seq: int, state: str) -> None:
        ticks = self.tables.backfill_ticks

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    ticks.update()
                    .where(ticks.c.backfill_id == backfill_id, ticks.c.seq == seq)
                    .values(state=state)
                )

        self._retrying(write)


def _first_state(status: str | None, rerun_failed: bool) -> str:
    if status is None:
        return QUEUED
    if rerun_failed and status == WorkflowStatus.FAILED.value:
        return RERUN
    return SKIPPED


def _bucket(state: str, status: str | None) -> str:
    """Where a tick counts in a backfill's progress."""
    if state in (QUEUED, RERUN):
        return "queued"
    if state == SKIPPED:
        return "skipped"
    if status == WorkflowStatus.SUCCESSFUL.value:
        return "done"
    if status == WorkflowStatus.FAILED.value:
        return "failed"
    if status in (WorkflowStatus.RUNNING.value, WorkflowStatus.PENDING.value):
        return "running"
    return "canceled"  # canceled, or deleted since


def _backfill(row: Any, progress: BackfillProgress | None) -> BackfillRecord:
    return BackfillRecord(
        backfill_id=row.backfill_id,
        name=row.name,
        state=row.state,
        params=json.loads(row.params or "{}"),
        max_active=row.max_active,
        rerun_failed=bool(row.rerun_failed),
        start_at=row.start_at,
        end_at=row.end_at,
        created_at=row.created_at,
        ended_at=row.ended_at,
        progress=progress or BackfillProgress(),
    )
