"""The store's part for waiting: the event mailbox, sleep wake times, suspended workflows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from executor.errors import InvalidInputError, WorkflowNotFoundError
from executor.status import TaskStatus, WorkflowStatus
from executor.store.records import Checkpoint, EventRecord
from executor.store.tasks import TaskStore

#: Workflows that can no longer receive events.
_CLOSED = {WorkflowStatus.SUCCESSFUL.value, WorkflowStatus.CANCELED.value}


class MailboxStore(TaskStore):
    def send_event(self, workflow_id: str, event_key: str, payload_json: str) -> int:
        workflows, events = self.tables.workflows, self.tables.events

        def write() -> int:
            with self._write() as conn:
                row = conn.execute(
                    sa.select(workflows.c.status).where(workflows.c.workflow_id == workflow_id)
                ).first()
                if row is None:
                    raise WorkflowNotFoundError(workflow_id)
                if row.status in _CLOSED:
                    raise InvalidInputError(
                        f"Workflow {workflow_id!r} is {row.status}; it takes no more events"
                    )
                result = conn.execute(
                    events.insert().values(
                        workflow_id=workflow_id,
                        event_key=event_key,
                        payload=payload_json,
                        created_at=self.clock(),
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                return int(key[0])

        return self._retrying(write)

    def consume_event(
        self,
        workflow_id: str,
        event_key: str,
        task_id: str,
        checkpoint_for: Callable[[Any], tuple[Checkpoint, str]],
        started_at: float,
        completes: Sequence[str] = (),
    ) -> tuple[str, Any] | Checkpoint | None:
        tasks, events = self.tables.tasks, self.tables.events

        def take() -> tuple[str, Any] | Checkpoint | None:
            with self._write() as conn:
                task = (tasks.c.workflow_id == workflow_id) & (tasks.c.task_id == task_id)
                status = conn.execute(self._lock(sa.select(tasks.c.status).where(task)))
                if status.scalar() == TaskStatus.SUCCESSFUL.value:
                    found = self._checkpoint_in(conn, workflow_id, task_id)
                    if found is not None:
                        return found
                query = (
                    sa.select(events.c.event_id, events.c.payload)
                    .where(events.c.workflow_id == workflow_id)
                    .where(events.c.event_key == event_key)
                    .where(events.c.consumed_by.is_(None))
                    .order_by(events.c.event_id)
                    .limit(1)
                )
                row = conn.execute(self._lock(query, skip_locked=True)).first()
                if row is None:
                    return None
                payload = json.loads(row.payload)
                conn.execute(
                    events.update()
                    .where(events.c.event_id == row.event_id)
                    .values(consumed_by=task_id, consumed_at=self.clock())
                )
                checkpoint, text = checkpoint_for(payload)
                params = self._finish_params(
                    workflow_id, task_id, checkpoint, text, started_at, 1, completes
                )
                self._finish_task(conn, params, checkpoint)
                return (event_key, payload)

        return self._retrying(take)

    def mailboxes_with_mail(self, mailboxes: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not mailboxes:
            return set()
        events = self.tables.events
        wanted = set(mailboxes)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events.c.workflow_id, events.c.event_key)
                .where(events.c.consumed_by.is_(None))
                .where(events.c.workflow_id.in_(sorted({w for w, _ in wanted})))
                .distinct()
            )
            return {(row.workflow_id, row.event_key) for row in rows} & wanted

    def list_events(self, workflow_id: str) -> list[EventRecord]:
        events = self.tables.events
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events)
                .where(events.c.workflow_id == workflow_id)
                .order_by(events.c.event_id)
            )
            return [
                EventRecord(
                    event_id=row.event_id,
                    workflow_id=row.workflow_id,
                    event_key=row.event_key,
                    payload=json.loads(row.payload),
                    created_at=row.created_at,
                    consumed_by=row.consumed_by,
                    consumed_at=row.consumed_at,
                )
                for row in rows
            ]

    def task_waiting(self, workflow_id: str, task_id: str, wake_at: float | None = None) -> float:
        tasks = self.tables.tasks

        def write() -> float:
            with self._write() as conn:
                values: dict[str, Any] = {
                    "status": TaskStatus.WAITING.value,
                    "started_at": sa.func.coalesce(tasks.c.started_at, self.clock()),
                }
                if wake_at is not None:
                    values["wake_at"] = sa.func.coalesce(tasks.c.wake_at, wake_at)
                where = (tasks.c.workflow_id == workflow_id) & (tasks.c.task_id == task_id)
                conn.execute(tasks.update().where(where).values(**values))
                stored = conn.execute(sa.select(tasks.c.wake_at).where(where)).scalar()
                return float(stored) if stored is not None else 0.0

        return self._retrying(write)

    def suspend(self, workflow_id: str, owner: str, wake_at: float) -> bool:
        workflows = self.tables.workflows

        def write() -> bool:
            with self._write() as conn:
                result = conn.execute(
                    workflows.update()
                    .where(workflows.c.workflow_id == workflow_id)
                    .where(workflows.c.owner == owner)
                    .values(
                        status=WorkflowStatus.PENDING.value,
                        owner=None,
                        lease_expires_at=None,
                        wake_at=wake_at,
                    )
                )
                return bool(result.rowcount == 1)

        return self._retrying(write)

    def due_wakeups(self, before: float) -> list[tuple[str, float]]:
        workflows = self.tables.workflows
        with self._read() as conn:
            rows = conn.execute(
                sa.select(workflows.c.workflow_id, workflows.c.wake_at)
                .where(workflows.c.wake_at.is_not(None))
                .where(workflows.c.wake_at <= before)
                .where(workflows.c.status == WorkflowStatus.PENDING.value)
                .order_by(workflows.c.wake_at)
            )
            return [(row.workflow_id, row.wake_at) for row in rows]

    def waiting_tasks(self, workflow_ids: Sequence[str]) -> Iterator[tuple[str, str]]:
        tasks = self.tables.tasks
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tasks.c.workflow_id, tasks.c.task_id)
                .where(tasks.c.workflow_id.in_(list(workflow_ids)))
                .where(tasks.c.status == TaskStatus.WAITING.value)
            )
            yield from ((row.workflow_id, row.task_id) for row in rows)
