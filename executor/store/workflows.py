"""The store's part for workflow rows: creating, reading, listing, leases and outcomes."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import (
    InvalidInputError,
    NoFreeSlotError,
    WorkflowNotFoundError,
    WorkflowQueueFullError,
)
from executor.status import HOLDS_SLOT, WorkflowStatus
from executor.store.leases import LEASE_TTL, lease_lost
from executor.store.records import (
    Admission,
    NewTask,
    QueueLimits,
    RunAlerts,
    WorkflowRecord,
    dump_json,
)
from executor.store.statements import OUTCOME_EVENTS, WORKFLOW_ROW, json_task_row
from executor.store.tasks import TaskStore

#: Statuses a reader may see as RESUMABLE when the owner's lease is lost.
_OWNED = (WorkflowStatus.RUNNING, WorkflowStatus.PENDING)
#: The queue's limits in ``gnomon_settings``.
_MAX_RUNNING, _MAX_PENDING = "max_running_workflows", "max_pending_workflows"
#: Seconds a process trusts the queue's limits it read: they are set once, by whichever
#: process calls ``workflow.init`` with them first.
LIMITS_TTL = 5.0


def _queue_seq() -> int:
    """A place in the queue: later submissions queue behind earlier ones."""
    return time.time_ns()


class WorkflowStore(TaskStore):
    #: The queue's limits as last read: (monotonic time, limits).
    _limits_read: tuple[float, QueueLimits] | None = None
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
        queue: QueueLimits | None = None,
        code_version: str | None = None,
        forked_from: str | None = None,
        alerts: RunAlerts | None = None,
        timeout_s: float | None = None,
    ) -> bool:
        params = self._workflow_row(
            workflow_id,
            name,
            graph,
            graph_blob,
            output_task_id,
            user_metadata,
            trigger,
            owner,
            ttl,
            code_version,
            forked_from,
        )
        if alerts is not None:
            params[WORKFLOW_ROW + "deadline_at"] = alerts.deadline_at
        params[WORKFLOW_ROW + "timeout_s"] = timeout_s
        limits = queue if queue is not None and queue.limited else None
        if max_active is None and limits is None:
            return self._retrying(lambda: self._insert_workflow(params, new_tasks, alerts))
        return self._retrying(
            lambda: self._insert_admitted(params, new_tasks, max_active, limits, alerts)
        )

    def _workflow_row(
        self,
        workflow_id: str,
        name: str,
        graph: bytes | None,
        graph_blob: str | None,
        output_task_id: str,
        user_metadata: dict[str, Any],
        trigger: str,
        owner: str | None,
        ttl: float,
        code_version: str | None,
        forked_from: str | None,
    ) -> dict[str, Any]:
        """A new workflow's row, as ``insert_workflow``'s parameters."""
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
            "queue_seq": None,
            "code_version": code_version,
            "forked_from": forked_from,
            "deadline_at": None,
            "timeout_s": None,
        }
        return {WORKFLOW_ROW + key: value for key, value in row.items()}

    def _insert_workflow(
        self, params: dict[str, Any], new_tasks: Sequence[NewTask], alerts: RunAlerts | None = None
    ) -> bool:
        # The form reports a creation by a task row; a run with alerts writes more rows.
        if self.direct is not None and new_tasks and alerts is None:
            assert self.sql.direct is not None
            rows = [json_task_row(task, seq) for seq, task in enumerate(new_tasks)]
            params = {**params, "tasks": dump_json(rows)}
            return bool(self._send(self.sql.direct.create_workflow, params))
        with self._write() as conn:
            return self._insert_workflow_in(conn, params, new_tasks, alerts)

    def _insert_workflow_in(
        self,
        conn: Connection,
        params: dict[str, Any],
        new_tasks: Sequence[NewTask],
        alerts: RunAlerts | None = None,
    ) -> bool:
        # ON CONFLICT, not a look first: one round trip fewer on every submit.
        if conn.execute(self.sql.insert_workflow, params).first() is None:
            return False
        workflow_id = params[WORKFLOW_ROW + "workflow_id"]
        self._insert_tasks(conn, workflow_id, new_tasks, first_seq=0)
        if alerts is not None and alerts.routes:
            # With the run: its outcome copies them into the outbox in its own transaction.
            conn.execute(
                self.sql.insert_routes,
                [
                    {
                        "workflow": workflow_id,
                        "r_event": r.event,
                        "r_key": r.notifier,
                        "r_target": r.target,
                    }
                    for r in alerts.routes
                ],
            )
        return True

    def _insert_admitted(
        self,
        params: dict[str, Any],
        new_tasks: Sequence[NewTask],
        max_active: int | None,
        queue: QueueLimits | None,
        alerts: RunAlerts | None = None,
    ) -> bool:
        """Insert a workflow that needs one of its name's ``max_active`` slots, or one of
        the queue's running slots (else a place in the queue), decided in the insert's
        transaction: replicas and drivers with stale views of each other cannot both
        take the last one."""
        w = self.tables.workflows
        workflow_id = params[WORKFLOW_ROW + "workflow_id"]
        name = params[WORKFLOW_ROW + "name"]
        with self._write() as conn:
            if max_active is not None:
                self._name_lock(conn, f"gnomon-slots:{name}")
            if queue is not None:
                exists = sa.select(w.c.workflow_id).where(w.c.workflow_id == workflow_id)
                if conn.execute(exists).first() is not None:
                    return False
                if self._must_queue(conn, queue, workflow_id):
                    params = {
                        **params,
                        WORKFLOW_ROW + "status": WorkflowStatus.PENDING.value,
                        WORKFLOW_ROW + "started_at": None,
                        WORKFLOW_ROW + "queue_seq": _queue_seq(),
                    }
            # Insert, then count: a duplicate id is then a duplicate (False), not "full".
            if not self._insert_workflow_in(conn, params, new_tasks, alerts):
                return False
            if max_active is not None:
                holding = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(w)
                    .where(w.c.name == name, w.c.status.in_([s.value for s in HOLDS_SLOT]))
                ).scalar_one()
                if holding > max_active:  # this one included; raising rolls the insert back
                    raise NoFreeSlotError(workflow_id, name, max_active)
            return True

    # ---------------------------------------------------------------- the queue

    def _must_queue(self, conn: Connection, queue: QueueLimits, workflow_id: str) -> bool:
        """Whether a workflow (other than those running now) must wait in the queue;
        raises ``WorkflowQueueFullError`` if it must and the queue is full. Holds the
        queue's lock until the transaction ends."""
        w = self.tables.workflows
        self._name_lock(conn, "gnomon-queue")
        running = conn.execute(
            sa.select(sa.func.count())
            .select_from(w)
            .where(w.c.status == WorkflowStatus.RUNNING.value, w.c.queue_seq.is_(None))
            .where(w.c.lease_expires_at > self.clock(), w.c.workflow_id != workflow_id)
        ).scalar_one()
        if running < queue.max_running:
            return False
        if queue.max_pending != -1:
            waiting = conn.execute(
                sa.select(sa.func.count())
                .select_from(w)
                .where(w.c.status == WorkflowStatus.PENDING.value, w.c.queue_seq.is_not(None))
                .where(w.c.workflow_id != workflow_id)
            ).scalar_one()
            if waiting >= queue.max_pending:
                raise WorkflowQueueFullError()
        return True

    def enter(
        self, workflow_id: str, owner: str, queue: QueueLimits, ttl: float = LEASE_TTL
    ) -> Admission:
        w = self.tables.workflows
        now = self.clock()
        current = self.get_workflow(workflow_id)
        if (
            current.owner
            and current.owner != owner
            and not lease_lost(current.owner, current.lease_expires_at, now)
        ):
            return Admission.TAKEN

        def take() -> Admission:
            with self._write() as conn:
                queued = queue.limited and self._must_queue(conn, queue, workflow_id)
                status = WorkflowStatus.PENDING if queued else WorkflowStatus.RUNNING
                result = conn.execute(
                    w.update()
                    .where(w.c.workflow_id == workflow_id)
                    .where(
                        w.c.owner.is_(None) if current.owner is None else w.c.owner == current.owner
                    )
                    .values(
                        owner=owner,
                        lease_expires_at=now + ttl,
                        status=status.value,
                        started_at=None if queued else now,
                        ended_at=None,
                        error=None,
                        wake_at=None,
                        # A workflow queued before keeps its place in line.
                        queue_seq=sa.func.coalesce(w.c.queue_seq, _queue_seq()) if queued else None,
                    )
                )
                if result.rowcount != 1:
                    return Admission.TAKEN
                return Admission.QUEUED if queued else Admission.RUNNING

        return self._retrying(take)

    def admit(self, owner: str, queue: QueueLimits, ttl: float = LEASE_TTL) -> list[str]:
        w = self.tables.workflows

        def admit() -> list[str]:
            with self._write() as conn:
                self._name_lock(conn, "gnomon-queue")
                now = self.clock()
                running = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(w)
                    .where(w.c.status == WorkflowStatus.RUNNING.value, w.c.queue_seq.is_(None))
                    .where(w.c.lease_expires_at > now)
                ).scalar_one()
                free = queue.max_running - running if queue.limited else None
                if free is not None and free <= 0:
                    return []
                # The oldest in line, whoever queued them: a manager starts its own only,
                # so the queue keeps its order across processes.
                head = (
                    sa.select(w.c.workflow_id, w.c.owner)
                    .where(w.c.status == WorkflowStatus.PENDING.value, w.c.queue_seq.is_not(None))
                    .where(w.c.lease_expires_at > now)
                    .order_by(w.c.queue_seq)
                )
                rows = conn.execute(head if free is None else head.limit(free)).all()
                mine = [row.workflow_id for row in rows if row.owner == owner]
                if mine:
                    conn.execute(
                        w.update()
                        .where(w.c.workflow_id.in_(mine), w.c.owner == owner)
                        .values(
                            status=WorkflowStatus.RUNNING.value,
                            queue_seq=None,
                            started_at=now,
                            lease_expires_at=now + ttl,
                        )
                    )
                return mine

        return self._retrying(admit)

    def queue_limits(self) -> QueueLimits:
        read = self._limits_read
        if read is not None and time.monotonic() - read[0] < LIMITS_TTL:
            return read[1]
        settings = self.tables.settings
        with self._read() as conn:
            rows = dict(conn.execute(sa.select(settings.c.name, settings.c.value)).all())
        limits = QueueLimits()
        if _MAX_RUNNING in rows:
            limits = QueueLimits(int(rows[_MAX_RUNNING]), int(rows[_MAX_PENDING]))
        self._limits_read = (time.monotonic(), limits)
        return limits

    def set_queue_limits(self, max_running: int | None, max_pending: int | None) -> QueueLimits:
        settings = self.tables.settings

        def write() -> QueueLimits:
            with self._write() as conn:
                self._name_lock(conn, "gnomon-queue")
                stored = dict(conn.execute(sa.select(settings.c.name, settings.c.value)).all())
                if _MAX_RUNNING in stored:
                    current = QueueLimits(int(stored[_MAX_RUNNING]), int(stored[_MAX_PENDING]))
                    if (max_running is not None and max_running != current.max_running) or (
                        max_pending is not None and max_pending != current.max_pending
                    ):
                        raise InvalidInputError(
                            "The workflow init is called again but the init options does not "
                            "match the original ones. Original options: "
                            f"max_running_workflows={current.max_running} "
                            f"max_pending_workflows={current.max_pending}; New options: "
                            f"max_running_workflows={max_running} "
                            f"max_pending_workflows={max_pending}."
                        )
                    self._limits_read = (time.monotonic(), current)
                    return current
                limits = QueueLimits(
                    -1 if max_running is None else max_running,
                    -1 if max_pending is None else max_pending,
                )
                conn.execute(
                    self.sql.insert(settings).on_conflict_do_nothing(),
                    [
                        {"name": _MAX_RUNNING, "value": str(limits.max_running)},
                        {"name": _MAX_PENDING, "value": str(limits.max_pending)},
                    ],
                )
                self._limits_read = (time.monotonic(), limits)
                return limits

        return self._retrying(write)

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
        code_version: str | None = None,
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
        if code_version:
            query = query.where(w.c.code_version == code_version)
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
            queued=row.queue_seq is not None and row.status == WorkflowStatus.PENDING.value,
            code_version=row.code_version,
            forked_from=row.forked_from,
            deadline_at=row.deadline_at,
            timeout_s=row.timeout_s,
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
                        started_at=now,
                        ended_at=None,
                        error=None,
                        wake_at=None,
                        queue_seq=None,
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
            ended = self.clock()
            with self._write() as conn:
                query = w.update().where(w.c.workflow_id == workflow_id)
                if owner is not None:
                    query = query.where(w.c.owner == owner)
                result = conn.execute(
                    query.values(
                        status=status.value,
                        output_preview=output_preview,
                        error=error,
                        ended_at=ended,
                        owner=None,
                        lease_expires_at=None,
                    )
                )
                if result.rowcount != 1:
                    return False
                if status.value in OUTCOME_EVENTS:  # the outbox, with the outcome
                    conn.execute(self.sql.alert_outcome, {"workflow": workflow_id, "ended": ended})
                return True

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
            alerted = [
                {"workflow": workflow_id, "ended": ended}
                for workflow_id, status, _, _, ended in rows
                if status in OUTCOME_EVENTS
            ]
            if alerted:  # the outbox, with the outcomes (those that were this owner's)
                conn.execute(self.sql.alert_outcome, alerted)

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
                for table in (
                    t.checkpoints,
                    t.tasks,
                    t.events,
                    t.task_logs,
                    t.task_names,
                    t.task_attempts,
                    t.notify_routes,
                    t.outbox,
                    t.pool_slots,
                ):
                    conn.execute(table.delete().where(table.c.workflow_id == workflow_id))
                result = conn.execute(
                    t.workflows.delete().where(t.workflows.c.workflow_id == workflow_id)
                )
                if result.rowcount == 0:
                    raise WorkflowNotFoundError(workflow_id)

        self._retrying(delete)
