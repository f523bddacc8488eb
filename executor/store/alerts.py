"""The store's part for notifications: the outbox's events and their deliveries.

A registered run is created with its routes (``RunAlerts``); its outcome copies the routes
of its event into the outbox in the outcome's own transaction (``statements.alerts``, on
the hot path). This part holds the rest: retries and missed deadlines, and the delivery
side (claims under a lease, delivered, failed with a time to try again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from executor.status import ACTIVE
from executor.store.core import SqlCore
from executor.store.leases import lease_lost
from executor.store.records import NotificationRecord, NotifyRoute

#: A delivery's states.
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Routes that only a process with the run's schedule registered can deliver.
CALLBACK = "callback:"


class AlertStore(SqlCore):
    def task_retrying(
        self,
        workflow_id: str,
        task_id: str,
        attempt_started_at: float,
        error: str,
        log_text: str,
    ) -> None:
        params = {
            "workflow": workflow_id,
            "task": task_id,
            "a_started": attempt_started_at,
            "a_error": error,
            "a_now": self.clock(),
        }

        def write() -> None:
            with self._write() as conn:
                if log_text:
                    conn.execute(
                        self.sql.save_log,
                        {
                            "workflow": workflow_id,
                            "task": task_id,
                            "l_started": attempt_started_at,
                            "l_text": log_text,
                            "l_updated": params["a_now"],
                        },
                    )
                conn.execute(self.sql.alert_retry, params)

        self._retrying(write)

    def deadline_missed(
        self,
        workflow_id: str,
        name: str,
        deadline_at: float,
        routes: Sequence[NotifyRoute],
        status: str | None,
    ) -> None:
        if not routes:
            return
        o = self.tables.outbox
        now = self.clock()
        rows = [
            {
                "workflow_id": workflow_id,
                "name": name,
                "event": route.event,
                "subject": "",
                "occurrence": deadline_at,
                "notifier": route.notifier,
                "target": route.target,
                "status": status,
                "error": None,
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for route in routes
        ]

        def write() -> None:
            with self._write() as conn:
                conn.execute(self.sql.insert(o).on_conflict_do_nothing(), rows)

        self._retrying(write)

    def claim_notifications(
        self,
        owner: str,
        limit: int,
        lease: float,
        callbacks_of: Sequence[str] = (),
        skip_notifiers: Sequence[str] = (),
    ) -> list[NotificationRecord]:
        o = self.tables.outbox

        # A look without a lock first: most passes find nothing due, and on SQLite a
        # write transaction would queue behind every worker's writes.
        now = self.clock()
        deliverable = sa.or_(
            sa.not_(o.c.target.startswith(CALLBACK)), o.c.name.in_(list(callbacks_of))
        )
        query = (
            sa.select(o.c.notification_id, o.c.claimed_by, o.c.claim_expires_at)
            .where(o.c.state == PENDING, o.c.next_attempt_at <= now)
            .where(deliverable)
            .order_by(o.c.next_attempt_at)
            .limit(limit * 4)
        )
        if skip_notifiers:
            query = query.where(o.c.notifier.not_in(list(skip_notifiers)))
        with self._read() as conn:
            due = [
                row.notification_id
                for row in conn.execute(query)
                # A claim that lapsed, or whose process died (a killed scheduler's).
                if row.claimed_by is None or lease_lost(row.claimed_by, row.claim_expires_at, now)
            ][:limit]
        if not due:
            return []

        def claim() -> list[NotificationRecord]:
            with self._write() as conn:
                rows = conn.execute(
                    self._lock(
                        sa.select(o.c.notification_id, o.c.claimed_by, o.c.claim_expires_at).where(
                            o.c.notification_id.in_(due), o.c.state == PENDING
                        ),
                        skip_locked=True,
                    )
                ).all()
                ids = [
                    row.notification_id
                    for row in rows
                    if row.claimed_by is None
                    or lease_lost(row.claimed_by, row.claim_expires_at, now)
                ]
                if not ids:
                    return []
                conn.execute(
                    o.update()
                    .where(o.c.notification_id.in_(ids))
                    .values(claimed_by=owner, claim_expires_at=now + lease)
                )
                claimed = conn.execute(
                    sa.select(o).where(o.c.notification_id.in_(ids)).order_by(o.c.next_attempt_at)
                )
                return [_notification(row) for row in claimed]

        return self._retrying(claim)

    def notification_delivered(self, notification_id: int, owner: str) -> bool:
        return self._settle(
            notification_id, owner, state=DELIVERED, delivered_at=self.clock(), last_error=None
        )

    def notification_failed(
        self, notification_id: int, owner: str, error: str, retry_at: float | None
    ) -> bool:
        if retry_at is None:
            return self._settle(notification_id, owner, state=FAILED, last_error=error)
        return self._settle(notification_id, owner, next_attempt_at=retry_at, last_error=error)

    def _settle(self, notification_id: int, owner: str, **values: Any) -> bool:
        o = self.tables.outbox

        def write() -> bool:
            with self._write() as conn:
                result = conn.execute(
                    o.update()
                    .where(o.c.notification_id == notification_id, o.c.claimed_by == owner)
                    .where(o.c.state == PENDING)
                    .values(
                        attempts=o.c.attempts + 1, claimed_by=None, claim_expires_at=None, **values
                    )
                )
                return bool(result.rowcount == 1)

        return self._retrying(write)

    def release_notifications(self, owner: str, notification_ids: Sequence[int]) -> None:
        if not notification_ids:
            return
        o = self.tables.outbox

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    o.update()
                    .where(o.c.notification_id.in_(list(notification_ids)))
                    .where(o.c.claimed_by == owner)
                    .values(claimed_by=None, claim_expires_at=None)
                )

        self._retrying(write)

    def list_notifications(self, workflow_id: str) -> list[NotificationRecord]:
        o = self.tables.outbox
        with self._read() as conn:
            rows = conn.execute(
                sa.select(o)
                .where(o.c.workflow_id == workflow_id)
                .order_by(o.c.created_at, o.c.notification_id)
            )
            return [_notification(row) for row in rows]

    def notification_stats(self) -> tuple[dict[str, int], int]:
        o = self.tables.outbox
        delivered = sa.case((o.c.state == DELIVERED, 1), else_=0)
        with self._read() as conn:
            counts = {
                state: int(count)
                for state, count in conn.execute(
                    sa.select(o.c.state, sa.func.count()).group_by(o.c.state)
                )
            }
            failures = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(o.c.attempts - delivered), 0))
            ).scalar_one()
        return counts, int(failures)

    def open_deadlines(self) -> list[tuple[str, float]]:
        w = self.tables.workflows
        with self._read() as conn:
            rows = conn.execute(
                sa.select(w.c.workflow_id, w.c.deadline_at)
                .where(w.c.deadline_at.is_not(None))
                .where(w.c.status.in_(sorted(status.value for status in ACTIVE)))
            )
            return [(row.workflow_id, float(row.deadline_at)) for row in rows]


def _notification(row: Any) -> NotificationRecord:
    return NotificationRecord(
        notification_id=row.notification_id,
        workflow_id=row.workflow_id,
        name=row.name,
        event=row.event,
        subject=row.subject,
        occurrence=row.occurrence,
        notifier=row.notifier,
        target=row.target,
        status=row.status,
        error=row.error,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
    )
