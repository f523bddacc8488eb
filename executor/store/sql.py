"""The durable store: one contract over SQLAlchemy Core, with a subclass per dialect quirk."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from executor.errors import (
    DatabaseUnavailableError,
    InvalidInputError,
    NoFreeSlotError,
    WorkflowNotFoundError,
)
from executor.status import HOLDS_SLOT, WorkflowStatus
from executor.store.mailbox import MailboxStore
from executor.store.records import (
    NewTask,
    WorkflowRecord,
    dump_json,
)
from executor.store.schema import checkpoints, events, task_logs, tasks, workflows
from executor.store.tasks import TaskStore

T = TypeVar("T")

#: How long a lease lasts without a heartbeat before another process may take the workflow.
LEASE_TTL = float(os.environ.get("GNOMON_LEASE_TTL", "30"))
#: How long a write keeps retrying while the database is unreachable (a restart, a failover).
WRITE_RETRY_SECONDS = float(os.environ.get("GNOMON_DB_RETRY_SECONDS", "60"))

HOSTNAME = socket.gethostname()


def owner_id(nonce: str) -> str:
    """An owner names its host and pid, so a dead owner on this host is seen at once."""
    return f"{HOSTNAME}/{os.getpid()}/{nonce}"


def owner_is_dead(owner: str) -> bool:
    host, _, rest = owner.partition("/")
    pid_text, _, _ = rest.partition("/")
    if host != HOSTNAME or not pid_text.isdigit():
        return False  # another machine: only the lease can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie still answers kill(0); it is dead all the same
        with open(f"/proc/{pid_text}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; it is the driver Gnomon ships with."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class SqlStore(TaskStore, MailboxStore):
    """Durable state of workflows, tasks and checkpoints.

    Contract:
    - Workflow rows are created once (``create_workflow`` returns False for an existing id).
    - Ownership is a lease: ``acquire`` is a compare-and-set that succeeds only when the
      workflow has no live owner, so two processes never run one workflow.
    - A task's checkpoint is written in the same transaction that marks it SUCCESSFUL or
      CONTINUED, and a second checkpoint for the same task is ignored: the first result wins.
    - Reads report RUNNING/PENDING workflows whose owner is gone as RESUMABLE.
    - Writes retry with backoff while the database is unreachable, for up to
      ``WRITE_RETRY_SECONDS``; then ``DatabaseUnavailableError``.
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        #: For code outside the store, which does not retry (APScheduler's job store):
        #: its connections are checked before use.
        self.checked_engine = engine
        self._insert_checkpoint = self._insert_ignoring_duplicates(checkpoints).returning(
            checkpoints.c.task_id
        )

    # ----------------------------------------------------------------- factory

    @staticmethod
    def create(url: str) -> SqlStore:
        url = normalize_url(url)
        backend = make_url(url).get_backend_name()
        from executor.store.dialects import PostgresStore, SqliteStore

        if backend == "sqlite":
            return SqliteStore.open(url)
        if backend == "postgresql":
            return PostgresStore.open(url)
        raise InvalidInputError(
            f"Unsupported database {backend!r}: Gnomon stores state in SQLite or PostgreSQL"
        )

    def dispose(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """One round trip (health checks); raises SQLAlchemy's error if unreachable."""
        with self._read() as conn:
            conn.exec_driver_sql("SELECT 1")

    # ------------------------------------------------------------- transactions

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _retrying(self, operation: Callable[[], T]) -> T:
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                return operation()
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
                if not self._is_transient(error):
                    raise
                if time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        make_url(self.url).render_as_string(hide_password=True),
                        str(error.orig).splitlines()[0] if error.orig else str(error),
                    ) from error
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _dialect_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, with ON CONFLICT where the dialect has it."""
        return table.insert()

    def _insert_ignoring_duplicates(self, table: sa.Table) -> Any:
        return self._dialect_insert(table).on_conflict_do_nothing()

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        """Errors worth retrying: a lost connection, not a missing table."""
        return bool(error.connection_invalidated) or isinstance(error, sa.exc.InterfaceError)

    # ------------------------------------------------------------------ workflows

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
        """Insert a workflow and its tasks; False if the id already exists.

        With ``owner`` the workflow is created RUNNING under that owner's lease, which
        saves the owner a separate ``acquire``; otherwise it is PENDING with no owner.
        With ``max_active``, raises ``NoFreeSlotError`` instead if that many workflows of
        this name already hold a slot (``HOLDS_SLOT``): decided in the insert's own
        transaction, so scheduler replicas with stale views of each other cannot both
        take the last slot.
        """
        now = time.time()
        row = {
            "workflow_id": workflow_id,
            "name": name,
            "status": (WorkflowStatus.RUNNING if owner else WorkflowStatus.PENDING).value,
            "owner": owner,
            "lease_expires_at": now + ttl if owner else None,
            "started_at": now if owner else None,
            "trigger": trigger,
            "user_metadata": dump_json(user_metadata),
            "graph": graph,
            "graph_blob": graph_blob,
            "output_task_id": output_task_id,
            "created_at": now,
        }
        if max_active is None:
            return self._retrying(lambda: self._insert_workflow(row, new_tasks))
        return self._retrying(lambda: self._insert_within(row, new_tasks, max_active))

    def _insert_workflow(self, row: dict[str, Any], new_tasks: Sequence[NewTask]) -> bool:
        """The workflow's row and, if it is new, its tasks; False if the id exists."""
        with self._write() as conn:
            return self._insert_workflow_in(conn, row, new_tasks)

    def _insert_workflow_in(
        self, conn: Connection, row: dict[str, Any], new_tasks: Sequence[NewTask]
    ) -> bool:
        # ON CONFLICT, not a look first: one round trip fewer on every submit.
        inserted = conn.execute(
            self._insert_ignoring_duplicates(workflows)
            .values(**row)
            .returning(workflows.c.workflow_id)
        ).first()
        if inserted is None:
            return False
        self._insert_tasks(conn, row["workflow_id"], new_tasks, first_seq=0)
        return True

    def _insert_within(
        self, row: dict[str, Any], new_tasks: Sequence[NewTask], max_active: int
    ) -> bool:
        with self._write() as conn:
            self._lock_name(conn, row["name"])
            # Insert, then count: a duplicate id is then a duplicate (False), not "full".
            if not self._insert_workflow_in(conn, row, new_tasks):
                return False
            holding = conn.execute(
                sa.select(sa.func.count())
                .select_from(workflows)
                .where(
                    workflows.c.name == row["name"],
                    workflows.c.status.in_([s.value for s in HOLDS_SLOT]),
                )
            ).scalar_one()
            if holding > max_active:  # this one included; raising rolls the insert back
                raise NoFreeSlotError(row["workflow_id"], row["name"], max_active)
            return True

    def _lock_name(self, conn: Connection, name: str) -> None:
        """Serialize slot-limited inserts of one name until the transaction ends. SQLite
        needs nothing: its write transactions already run one at a time."""

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_WORKFLOW_COLUMNS).where(workflows.c.workflow_id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return _workflow_record(row)

    def load_graph(self, workflow_id: str) -> tuple[bytes | None, str | None]:
        with self._read() as conn:
            row = conn.execute(
                sa.select(workflows.c.graph, workflows.c.graph_blob).where(
                    workflows.c.workflow_id == workflow_id
                )
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
        """Newest first. ``before`` is the (created_at, workflow_id) keyset cursor."""
        query = sa.select(*_WORKFLOW_COLUMNS)
        if statuses is not None:
            stored = {s.value for s in statuses}
            if WorkflowStatus.RESUMABLE in statuses:
                # RESUMABLE is also how a dead owner's RUNNING/PENDING row reads.
                stored |= {WorkflowStatus.RUNNING.value, WorkflowStatus.PENDING.value}
            query = query.where(workflows.c.status.in_(sorted(stored)))
        if name:
            query = query.where(workflows.c.name == name)
        if id_prefix:
            query = query.where(workflows.c.workflow_id.startswith(id_prefix, autoescape=True))
        if before is not None:
            query = query.where(
                sa.tuple_(workflows.c.created_at, workflows.c.workflow_id) < sa.tuple_(*before)
            )
        query = query.order_by(workflows.c.created_at.desc(), workflows.c.workflow_id.desc())
        # Stored statuses read as themselves, except RUNNING/PENDING (which may read
        # RESUMABLE): only a filter touching those must over-read and filter here.
        computed = {WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.RESUMABLE}
        if limit is not None and (statuses is None or not computed & set(statuses)):
            query = query.limit(limit)
        with self._read() as conn:
            records = [_workflow_record(row) for row in conn.execute(query)]
        if statuses is not None:
            wanted = set(statuses)
            records = [r for r in records if r.status in wanted]
            if limit is not None:
                records = records[:limit]
        return records

    def count_by_status(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(workflows.c.status, sa.func.count()).group_by(workflows.c.status)
            )
            return {status: count for status, count in rows}

    # ---------------------------------------------------------------- ownership

    def acquire(self, workflow_id: str, owner: str, ttl: float = LEASE_TTL) -> bool:
        """Take the lease if nobody alive holds it, and mark the workflow RUNNING."""
        now = time.time()
        current = self.get_workflow(workflow_id)
        if current.owner and current.owner != owner and not owner_is_dead(current.owner):
            if (current.lease_expires_at or 0) > now:
                return False

        def take() -> bool:
            with self._write() as conn:
                result = conn.execute(
                    workflows.update()
                    .where(workflows.c.workflow_id == workflow_id)
                    # The compare-and-set: the owner we saw is still the owner.
                    .where(
                        workflows.c.owner.is_(None)
                        if current.owner is None
                        else workflows.c.owner == current.owner
                    )
                    .values(
                        owner=owner,
                        lease_expires_at=now + ttl,
                        status=WorkflowStatus.RUNNING.value,
                        started_at=sa.func.coalesce(workflows.c.started_at, now),
                        ended_at=None,
                        error=None,
                        wake_at=None,
                    )
                )
                return result.rowcount == 1

        return self._retrying(take)

    def renew(self, owner: str, workflow_ids: Sequence[str], ttl: float = LEASE_TTL) -> None:
        if not workflow_ids:
            return

        def renew() -> None:
            with self._write() as conn:
                conn.execute(
                    workflows.update()
                    .where(workflows.c.owner == owner)
                    .where(workflows.c.workflow_id.in_(list(workflow_ids)))
                    .values(lease_expires_at=time.time() + ttl)
                )

        self._retrying(renew)

    def owners(self, workflow_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """(status, owner) of each workflow, in one read: the heartbeat's check."""
        if not workflow_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(workflows.c.workflow_id, workflows.c.status, workflows.c.owner).where(
                    workflows.c.workflow_id.in_(list(workflow_ids))
                )
            )
            return {row.workflow_id: (row.status, row.owner) for row in rows}

    def finish(
        self,
        workflow_id: str,
        owner: str | None,
        status: WorkflowStatus,
        output_preview: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome and release the lease; False if ``owner`` no longer owns it."""

        def write() -> bool:
            with self._write() as conn:
                query = workflows.update().where(workflows.c.workflow_id == workflow_id)
                if owner is not None:
                    query = query.where(workflows.c.owner == owner)
                result = conn.execute(
                    query.values(
                        status=status.value,
                        output_preview=output_preview,
                        error=error,
                        ended_at=time.time(),
                        owner=None,
                        lease_expires_at=None,
                    )
                )
                return result.rowcount == 1

        return self._retrying(write)

    def finish_many(
        self, owner: str, outcomes: Sequence[tuple[str, WorkflowStatus, str | None, str | None]]
    ) -> None:
        """``finish`` for many workflows of one owner, in one transaction: (workflow id,
        status, output preview, error) each. The manager batches its finishes this way."""
        ended = time.time()
        rows = [
            (workflow_id, status.value, output_preview, error, ended)
            for workflow_id, status, output_preview, error in outcomes
        ]
        self._retrying(lambda: self._finish_outcomes(owner, rows))

    def _finish_outcomes(
        self, owner: str, rows: Sequence[tuple[str, str, str | None, str | None, float]]
    ) -> None:
        with self._write() as conn:
            conn.execute(
                _FINISH_MANY,
                [
                    {
                        "f_owner": owner,
                        "f_workflow": workflow_id,
                        "f_status": status,
                        "f_preview": output_preview,
                        "f_error": error,
                        "f_ended": ended,
                    }
                    for workflow_id, status, output_preview, error, ended in rows
                ],
            )

    def set_status(self, workflow_id: str, status: WorkflowStatus) -> None:
        def write() -> None:
            with self._write() as conn:
                result = conn.execute(
                    workflows.update()
                    .where(workflows.c.workflow_id == workflow_id)
                    .values(status=status.value)
                )
                if result.rowcount == 0:
                    raise WorkflowNotFoundError(workflow_id)

        self._retrying(write)

    def delete_workflow(self, workflow_id: str) -> None:
        def delete() -> None:
            with self._write() as conn:
                for table in (checkpoints, tasks, events, task_logs):
                    conn.execute(table.delete().where(table.c.workflow_id == workflow_id))
                result = conn.execute(
                    workflows.delete().where(workflows.c.workflow_id == workflow_id)
                )
                if result.rowcount == 0:
                    raise WorkflowNotFoundError(workflow_id)

        self._retrying(delete)


#: ``finish_many``'s statement, built once: it runs for every batch of outcomes.
_FINISH_MANY = (
    workflows.update()
    .where(workflows.c.workflow_id == sa.bindparam("f_workflow"))
    .where(workflows.c.owner == sa.bindparam("f_owner"))
    .values(
        status=sa.bindparam("f_status"),
        output_preview=sa.bindparam("f_preview"),
        error=sa.bindparam("f_error"),
        ended_at=sa.bindparam("f_ended"),
        owner=None,
        lease_expires_at=None,
    )
)

_WORKFLOW_COLUMNS = [c for c in workflows.c if c.name not in ("graph", "graph_blob")]


def _workflow_record(row: Any) -> WorkflowRecord:
    import json

    status = WorkflowStatus(row.status)
    if status in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING) and row.owner is not None:
        if (row.lease_expires_at or 0) < time.time() or owner_is_dead(row.owner):
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
