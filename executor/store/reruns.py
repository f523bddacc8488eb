"""The store's part for running a workflow again: a retry or a clear on its own id, and a
fork into a new one. Earlier attempts of the tasks that run again are kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import WorkflowNotFoundError, WorkflowStillActiveError
from executor.status import ACTIVE, TaskStatus, WorkflowStatus
from executor.store.leases import LEASE_TTL, lease_lost
from executor.store.records import (
    Checkpoint,
    NewTask,
    Rerun,
    TaskAttempt,
    TaskRecord,
    dump_json,
)
from executor.store.workflows import WorkflowStore

#: Statuses of a finished task: its checkpoint holds its value.
_DONE = [TaskStatus.SUCCESSFUL.value]


class RerunStore(WorkflowStore):
    def rerun(self, workflow_id: str, change: Rerun) -> None:
        w, t = self.tables.workflows, self.tables.tasks

        def write() -> None:
            with self._write() as conn:
                row = conn.execute(
                    self._lock(
                        sa.select(w.c.status, w.c.owner, w.c.lease_expires_at, w.c.code_version)
                    ).where(w.c.workflow_id == workflow_id)
                ).first()
                if row is None:
                    raise WorkflowNotFoundError(workflow_id)
                now = self.clock()
                live = row.owner is not None and not lease_lost(
                    row.owner, row.lease_expires_at, now
                )
                if WorkflowStatus(row.status) in ACTIVE and live:
                    raise WorkflowStillActiveError(workflow_id, "run again")
                gone = [*change.reset, *change.drop]
                self._archive(conn, workflow_id, gone, row.code_version, now)
                self._delete_checkpoints(conn, workflow_id, gone)
                if change.reset:
                    conn.execute(
                        t.update()
                        .where(t.c.workflow_id == workflow_id, t.c.task_id.in_(change.reset))
                        .values(
                            status=TaskStatus.PENDING.value,
                            attempts=0,
                            crashes=0,
                            started_at=None,
                            ended_at=None,
                            error=None,
                            output_preview=None,
                            output_task_id=None,
                            code_version=None,
                            wake_at=None,
                        )
                    )
                if change.drop:
                    conn.execute(
                        t.delete().where(
                            t.c.workflow_id == workflow_id, t.c.task_id.in_(change.drop)
                        )
                    )
                if change.reopen:
                    conn.execute(
                        t.update()
                        .where(t.c.workflow_id == workflow_id, t.c.task_id.in_(change.reopen))
                        .values(
                            status=TaskStatus.CONTINUED.value,
                            output_task_id=None,
                            output_preview=None,
                        )
                    )
                self._insert_tasks(conn, workflow_id, change.new_tasks, _seq_after(now))
                values: dict[str, Any] = {
                    "owner": None,
                    "lease_expires_at": None,
                    "status": WorkflowStatus.RESUMABLE.value,
                    "ended_at": None,
                    "error": None,
                    "output_preview": None,
                    "wake_at": None,
                    "queue_seq": None,
                }
                if change.output_task_id is not None:
                    if change.code_version != row.code_version:
                        # The tasks that stay finished ran with the code before.
                        conn.execute(
                            t.update()
                            .where(t.c.workflow_id == workflow_id, t.c.code_version.is_(None))
                            .where(t.c.status.in_([*_DONE, TaskStatus.CONTINUED.value]))
                            .values(code_version=row.code_version)
                        )
                    if change.user_metadata is not None:
                        values["user_metadata"] = dump_json(change.user_metadata)
                    values.update(
                        graph=change.graph,
                        graph_blob=change.graph_blob,
                        output_task_id=change.output_task_id,
                        code_version=change.code_version,
                    )
                conn.execute(w.update().where(w.c.workflow_id == workflow_id).values(**values))

        self._retrying(write)

    def fork_workflow(
        self,
        origin_id: str,
        workflow_id: str,
        name: str,
        graph: bytes | None,
        graph_blob: str | None,
        output_task_id: str,
        new_tasks: Sequence[NewTask],
        copied: Sequence[TaskRecord],
        checkpoints: dict[str, Checkpoint],
        user_metadata: dict[str, Any],
        owner: str,
        code_version: str | None = None,
    ) -> bool:
        t, c = self.tables.tasks, self.tables.checkpoints
        params = self._workflow_row(
            workflow_id,
            name,
            graph,
            graph_blob,
            output_task_id,
            user_metadata,
            "fork",
            owner,
            LEASE_TTL,
            code_version,
            origin_id,
        )

        def write() -> bool:
            with self._write() as conn:
                if not self._insert_workflow_in(conn, params, new_tasks):
                    return False
                if checkpoints:
                    conn.execute(
                        self.sql.insert(c).on_conflict_do_nothing(),
                        [
                            {
                                "workflow_id": workflow_id,
                                "task_id": task_id,
                                "kind": checkpoint.kind,
                                "data": checkpoint.data,
                                "blob": checkpoint.blob,
                                "size": checkpoint.size,
                            }
                            for task_id, checkpoint in checkpoints.items()
                        ],
                    )
                for task in copied:
                    conn.execute(
                        t.update()
                        .where(t.c.workflow_id == workflow_id, t.c.task_id == task.task_id)
                        .values(
                            status=task.status.value,
                            attempts=task.attempts,
                            started_at=task.started_at,
                            ended_at=task.ended_at,
                            output_preview=task.output_preview,
                            output_task_id=task.output_task_id,
                            code_version=task.code_version or code_version,
                        )
                    )
                return True

        return self._retrying(write)

    def forks(self, workflow_id: str) -> list[str]:
        w = self.tables.workflows
        with self._read() as conn:
            rows = conn.execute(
                sa.select(w.c.workflow_id)
                .where(w.c.forked_from == workflow_id)
                .order_by(w.c.created_at, w.c.workflow_id)
            )
            return [row.workflow_id for row in rows]

    def task_attempts(self, workflow_id: str, task_id: str | None = None) -> list[TaskAttempt]:
        a = self.tables.task_attempts
        query = sa.select(a).where(a.c.workflow_id == workflow_id)
        if task_id is not None:
            query = query.where(a.c.task_id == task_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(a.c.task_id, a.c.archived_at))
            return [
                TaskAttempt(
                    workflow_id=row.workflow_id,
                    task_id=row.task_id,
                    archived_at=row.archived_at,
                    name=row.name,
                    status=TaskStatus(row.status),
                    attempts=row.attempts,
                    started_at=row.started_at,
                    ended_at=row.ended_at,
                    error=row.error,
                    output_preview=row.output_preview,
                    code_version=row.code_version,
                )
                for row in rows
            ]

    def _archive(
        self,
        conn: Connection,
        workflow_id: str,
        task_ids: Sequence[str],
        code_version: str | None,
        now: float,
    ) -> None:
        """Keep the rows of these tasks that ran as earlier attempts."""
        if not task_ids:
            return
        t, a = self.tables.tasks, self.tables.task_attempts
        ran = (
            sa.select(
                t.c.workflow_id,
                t.c.task_id,
                sa.literal(now, sa.Float),
                t.c.name,
                t.c.status,
                t.c.attempts,
                t.c.started_at,
                t.c.ended_at,
                t.c.error,
                t.c.output_preview,
                sa.func.coalesce(t.c.code_version, code_version),
            )
            .where(t.c.workflow_id == workflow_id, t.c.task_id.in_(list(task_ids)))
            .where(t.c.status != TaskStatus.PENDING.value)
        )
        columns = [
            a.c.workflow_id,
            a.c.task_id,
            a.c.archived_at,
            a.c.name,
            a.c.status,
            a.c.attempts,
            a.c.started_at,
            a.c.ended_at,
            a.c.error,
            a.c.output_preview,
            a.c.code_version,
        ]
        conn.execute(a.insert().from_select(columns, ran))

    def _delete_checkpoints(
        self, conn: Connection, workflow_id: str, task_ids: Sequence[str]
    ) -> None:
        if task_ids:
            c = self.tables.checkpoints
            conn.execute(
                c.delete().where(c.c.workflow_id == workflow_id, c.c.task_id.in_(list(task_ids)))
            )


def _seq_after(now: float) -> int:
    """Task order for tasks added by a rerun: after every task so far."""
    return int(now * 1_000_000)
