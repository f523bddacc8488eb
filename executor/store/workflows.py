"""The store's part for workflow rows: creating, reading, listing, leases and outcomes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import NoFreeSlotError, WorkflowNotFoundError
from executor.status import HOLDS_SLOT, WorkflowStatus
from executor.store.leases import LEASE_TTL, lease_lost
from executor.store.records import NewTask, WorkflowRecord, dump_json
from executor.store.statements import WORKFLOW_ROW, json_task_row
from executor.store.tasks import TaskStore

#: Statuses a reader may see as RESUMABLE when the owner's lease is lost.
_OWNED = (WorkflowStatus.RUNNING, WorkflowStatus.PENDING)


class WorkflowStore(TaskStore):
    # ------------------------------------------------------------------ creating

    def create_workflow(
        self,
        workflow_id: str,
        name: str,
        graph: bytes | None,
        graph_blob: str | None,
        output_task_id: str,
        new_tasks: Sequence[NewTask],
        user_metadata: dict[str, Any],
        trigger: str = "manual",
        owner: str | None = None,
        ttl: float = LEASE_TTL,
        max_active: int | None = None,
    ) -> bool:
        now = self.clock()
        row = {
            "workflow_id": workflow_id,
            "name": name,
            "status": (WorkflowStatus.RUNNING if owner else WorkflowStatus.PENDING).value,
            "trigger": trigger,
            "user_metadata": dump_json(user_metadata),
            "graph": graph,
            "graph_blob": graph_blob,
            "output_task_id": output_task_id,
            "output_preview": None,
            "error": None,
            "created_at": now,
            "started_at": now if owner else None,
            "ended_at": None,
            "owner": owner,
            "lease_expires_at": now + ttl if owner else None,
            "wake_at": None,
        }
        params = {WORKFLOW_ROW + key: value for key, value in row.items()}
        if max_active is None:
            return self._retrying(lambda: self._insert_workflow(params, new_tasks))
        return self._retrying(lambda: self._insert_within(params, new_tasks, max_active))

    def _insert_workflow(self, params: dict[str, Any], new_tasks: Sequence[NewTask]) -> bool:
        if self.direct is not None and new_tasks:  # the form reports a creation by a task row
            assert self.sql.direct is not None
            rows = [json_task_row(task, seq) for seq, task in enumerate(new_tasks)]
            params = {**params, "tasks": dump_json(rows)}
            return bool(self._send(self.sql.direct.create_workflow, params))
        with self._write() as conn:
            return self._insert_workflow_in(conn, params, new_tasks)

    def _insert_workflow_in(
        self, conn: Connection, params: dict[str, Any], new_tasks: Sequence[NewTask]
    ) -> bool:
        # ON CONFLICT, not a look first: one round trip fewer on every submit.
        if conn.execute(self.sql.insert_workflow, params).first() is None:
            return False
        self._insert_tasks(conn, params[WORKFLOW_ROW + "workflow_id"], new_tasks, first_seq=0)
        return True

    def _insert_within(
        self, params: dict[str, Any], new_tasks: Sequence[NewTask], max_active: int
    ) -> bool:
        w = self.tables.workflows
        name = params[WORKFLOW_ROW + "name"]
        with self._write() as conn:
            self._name_lock(conn, f"gnomon-slots:{name}")
            # Insert, then count: a duplicate id is then a duplicate (False), not "full".
            if not self._insert_workflow_in(conn, params, new_tasks):
                return False
            holding = conn.execute(
                sa.select(sa.func.count())
                .select_from(w)
                .where(w.c.name == name, w.c.status.in_([s.value for s in HOLDS_SLOT]))
            ).scalar_one()
            if holding > max_active:  # this one included; raising rolls the insert back
                raise NoFreeSlotError(params[WORKFLOW_ROW + "workflow_id"], name, max_active)
            return True

    # ------------------------------------------------------------------- reading

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        w = self.tables.workflows
        with self._read() as conn:
            row = conn.execute(
                sa.select(*self._workflow_columns()).where(w.c.workflow_id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return self._workflow_record(row)

    def load_graph(self, workflow_id: str) -> tuple[bytes | None, str | None]:
        w = self.tables.workflows
        with self._read() as conn:
            row = conn.execute(
                sa.select(w.c.graph, w.c.graph_blob).where(w.c.workflow_id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return row.graph, row.graph_blob

    def list_workflows(
        self,
        statuses: Sequence[WorkflowStatus] | None = None,
        name: str | None = None,
        limit: int | None = None,
        before: tuple[float, str] | None = None,
        id_prefix: str | None = None,
    ) -> list[WorkflowRecord]:
        w = self.tables.workflows
        query = sa.select(*self._workflow_columns())
        if statuses is not None:
            stored = {s.value for s in statuses}
            if WorkflowStatus.RESUMABLE in statuses:
                # RESUMABLE is also how a dead owner's RUNNING/PENDING row reads.
                stored |= {s.value for s in _OWNED}
            query = query.where(w.c.status.in_(sorted(stored)))
        if name:
            query = query.where(w.c.name == name)
        if id_prefix:
            query = query.where(w.c.workflow_id.startswith(id_prefix, autoescape=True))
        if before is not None:
            query = query.where(sa.tuple_(w.c.created_at, w.c.workflow_id) < sa.tuple_(*before))
        query = query.order_by(w.c.created_at.desc(), w.c.workflow_id.desc())
        # Stored statuses read as themselves, except RUNNING/PENDING (which may read
        # RESUMABLE): only a filter touching those must over-read and filter here.
        computed = {*_OWNED, WorkflowStatus.RESUMABLE}
        if limit is not None and (statuses is None or not computed & set(statuses)):
            query = query.limit(limit)
        with self._read() as conn:
            records = [self._workflow_record(row) for row in conn.execute(query)]
        if statuses is not None:
            wanted = set(statuses)
            records = [r for r in records if r.status in wanted]
            if limit is not None:
                records = records[:limit]
        return records

    def count_by_status(self) -> dict[str, int]:
        w = self.tables.workflows
        with self._read() as conn:
            rows = conn.execute(sa.select(w.c.status, sa.func.count()).group_by(w.c.status))
            return {status: count for status, count in rows}

    def _workflow_columns(self) -> list[sa.Column[Any]]:
        return [c for c in self.tables.workflows.c if c.key not in ("graph", "graph_blob")]

    def _workflow_record(self, row: Any) -> WorkflowRecord:
        status = WorkflowStatus(row.status)
        if (
            status in _OWNED
            and row.owner is not None
            and lease_lost(row.owner, row.lease_expires_at, self.clock())
        ):
            status = WorkflowStatus.RESUMABLE
        return WorkflowRecord(
            workflow_id=row.workflow_id,
            name=row.name,
            status=status,
            trigger=row.trigger,
            user_metadata=json.loads(row.user_metadata or "{}"),
            output_task_id=row.output_task_id,
            output_preview=row.output_preview,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            owner=row.owner,
            lease_expires_at=row.lease_expires_at,
            wake_at=row.wake_at,
        )

    # ---------------------------------------------------------------- ownership

    def acquire(self, workflow_id: str, owner: str, ttl: float = LEASE_TTL) -> bool:
        w = self.tables.workflows
        now = self.clock()
        current = self.get_workflow(workflow_id)
        if (
            current.owner
            and current.owner != owner
            and not lease_lost(current.owner, current.lease_expires_at, now)
        ):
            return False

        def take() -> bool:
            with self._write() as conn:
                result = conn.execute(
                    w.update()
                    .where(w.c.workflow_id == workflow_id)
                    # The compare-and-set: the owner we saw is still the owner.
                    .where(
                        w.c.owner.is_(None) if current.owner is None else w.c.owner == current.owner
                    )
                    .values(
                        owner=owner,
                        lease_expires_at=now + ttl,
                        status=WorkflowStatus.RUNNING.value,
                        started_at=sa.func.coalesce(w.c.started_at, now),
                        ended_at=None,
                        error=None,
                        wake_at=None,
                    )
                )
                return bool(result.rowcount == 1)

        return self._retrying(take)

    def renew(self, owner: str, workflow_ids: Sequence[str], ttl: float = LEASE_TTL) -> None:
        if not workflow_ids:
            return
        w = self.tables.workflows

        def renew() -> None:
            with self._write() as conn:
                conn.execute(
                    w.update()
                    .where(w.c.owner == owner, w.c.workflow_id.in_(list(workflow_ids)))
                    .values(lease_expires_at=self.clock() + ttl)
                )

        self._retrying(renew)

    def owners(self, workflow_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        if not workflow_ids:
            return {}
        w = self.tables.workflows
        with self._read() as conn:
            rows = conn.execute(
                sa.select(w.c.workflow_id, w.c.status, w.c.owner).where(
                    w.c.workflow_id.in_(list(workflow_ids))
                )
            )
            return {row.workflow_id: (row.status, row.owner) for row in rows}

    # ------------------------------------------------------------------ outcomes

    def finish(
        self,
        workflow_id: str,
        owner: str | None,
        status: WorkflowStatus,
        output_preview: str | None = None,
        error: str | None = None,
    ) -> bool:
        w = self.tables.workflows

        def write() -> bool:
            with self._write() as conn:
                query = w.update().where(w.c.workflow_id == workflow_id)
                if owner is not None:
                    query = query.where(w.c.owner == owner)
                result = conn.execute(
                    query.values(
                        status=status.value,
                        output_preview=output_preview,
                        error=error,
                        ended_at=self.clock(),
                        owner=None,
                        lease_expires_at=None,
                    )
                )
                return bool(result.rowcount == 1)

        return self._retrying(write)

    def finish_many(
        self, owner: str, outcomes: Sequence[tuple[str, WorkflowStatus, str | None, str | None]]
    ) -> None:
        ended = self.clock()
        rows = [
            (workflow_id, status.value, output_preview, error, ended)
            for workflow_id, status, output_preview, error in outcomes
        ]
        self._retrying(lambda: self._finish_outcomes(owner, rows))

    def _finish_outcomes(
        self, owner: str, rows: Sequence[tuple[str, str, str | None, str | None, float]]
    ) -> None:
        if self.direct is not None:
            assert self.sql.direct is not None
            self._send(self.sql.direct.finish_outcomes, {"by": owner, "outcomes": dump_json(rows)})
            return
        with self._write() as conn:
            conn.execute(
                self.sql.finish_outcome,
                [
                    {
                        "by": owner,
                        "o_workflow": workflow_id,
                        "o_status": status,
                        "o_preview": output_preview,
                        "o_error": error,
                        "o_ended": ended,
                    }
                    for workflow_id, status, output_preview, error, ended in rows
                ],
            )

    def set_status(self, workflow_id: str, status: WorkflowStatus) -> None:
        w = self.tables.workflows

        def write() -> None:
            with self._write() as conn:
                result = conn.execute(
                    w.update().where(w.c.workflow_id == workflow_id).values(status=status.value)
                )
                if result.rowcount == 0:
                    raise WorkflowNotFoundError(workflow_id)

        self._retrying(write)

    def delete_workflow(self, workflow_id: str) -> None:
        t = self.tables

        def delete() -> None:
            with self._write() as conn:
                for table in (t.checkpoints, t.tasks, t.events, t.task_logs):
                    conn.execute(table.delete().where(table.c.workflow_id == workflow_id))
                result = conn.execute(
                    t.workflows.delete().where(t.workflows.c.workflow_id == workflow_id)
                )
                if result.rowcount == 0:
                    raise WorkflowNotFoundError(workflow_id)

        self._retrying(delete)
