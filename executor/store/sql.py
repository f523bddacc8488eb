"""The durable store: one contract over SQLAlchemy Core, with a subclass per dialect quirk."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from executor.errors import DatabaseUnavailableError, TaskNotFoundError, WorkflowNotFoundError
from executor.status import TaskStatus, WorkflowStatus
from executor.store.mailbox import MailboxStore
from executor.store.records import (
    Checkpoint,
    NewTask,
    TaskLog,
    TaskRecord,
    WorkflowRecord,
    dump_json,
)
from executor.store.schema import checkpoints, events, task_logs, tasks, workflows

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
    return False


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; it is the driver Gnomon ships with."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class SqlStore(MailboxStore):
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
        self._insert_checkpoint = self._insert_ignoring_duplicates(checkpoints)

    # ----------------------------------------------------------------- factory

    @staticmethod
    def create(url: str) -> SqlStore:
        url = normalize_url(url)
        backend = make_url(url).get_backend_name()
        if backend == "sqlite":
            return SqliteStore.open(url)
        if backend == "postgresql":
            return PostgresStore.open(url)
        return SqlStore(url, sa.create_engine(url, pool_pre_ping=True))

    def dispose(self) -> None:
        self.engine.dispose()

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
    ) -> bool:
        """Insert a workflow and its tasks; False if the id already exists.

        With ``owner`` the workflow is created RUNNING under that owner's lease, which
        saves the owner a separate ``acquire``; otherwise it is PENDING with no owner.
        """
        now = time.time()

        def insert() -> bool:
            with self._write() as conn:
                exists = conn.execute(
                    sa.select(workflows.c.workflow_id).where(workflows.c.workflow_id == workflow_id)
                ).first()
                if exists:
                    return False
                conn.execute(
                    workflows.insert().values(
                        workflow_id=workflow_id,
                        name=name,
                        status=(WorkflowStatus.RUNNING if owner else WorkflowStatus.PENDING).value,
                        owner=owner,
                        lease_expires_at=now + ttl if owner else None,
                        started_at=now if owner else None,
                        trigger=trigger,
                        user_metadata=dump_json(user_metadata),
                        graph=graph,
                        graph_blob=graph_blob,
                        output_task_id=output_task_id,
                        created_at=now,
                    )
                )
                self._insert_tasks(conn, workflow_id, new_tasks, first_seq=0)
                return True

        return self._retrying(insert)

    def _insert_tasks(
        self, conn: Connection, workflow_id: str, new_tasks: Sequence[NewTask], first_seq: int
    ) -> None:
        if not new_tasks:
            return
        conn.execute(
            self._insert_ignoring_duplicates(tasks),
            [
                {
                    "workflow_id": workflow_id,
                    "task_id": t.task_id,
                    "seq": first_seq + i,
                    "name": t.name,
                    "parent_task_id": t.parent_task_id,
                    "upstream": dump_json(t.upstream),
                    "status": TaskStatus.PENDING.value,
                    "attempts": 0,
                    "user_metadata": dump_json(t.user_metadata),
                }
                for i, t in enumerate(new_tasks)
            ],
        )

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
        if limit is not None and statuses is None:
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

    # --------------------------------------------------------------------- tasks

    def tasks_started(self, workflow_id: str, started: Sequence[tuple[str, float]]) -> None:
        """Mark tasks RUNNING (batched by the worker; see ``executor.runtime``)."""
        if not started:
            return

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    tasks.update()
                    .where(tasks.c.workflow_id == workflow_id)
                    .where(tasks.c.task_id == sa.bindparam("t_id"))
                    .where(tasks.c.status.in_(_NOT_DONE))
                    .values(
                        status=TaskStatus.RUNNING.value,
                        started_at=sa.bindparam("t_started"),
                        attempts=tasks.c.attempts + 1,
                    ),
                    [{"t_id": task_id, "t_started": at} for task_id, at in started],
                )

        self._retrying(write)

    def task_finished(
        self,
        workflow_id: str,
        task_id: str,
        checkpoint: Checkpoint | None,
        output_preview: str | None,
        started_at: float,
        attempts_delta: int,
        completes: Sequence[str] = (),
        new_tasks: Sequence[NewTask] = (),
        log: tuple[float, str] | None = None,
    ) -> None:
        """Checkpoint a task's output (or, with kind "continuation", the DAG it returned).

        ``completes`` are the tasks whose continuations end in this task: they finish
        with it, pointing at its checkpoint. ``new_tasks`` are a continuation's tasks.
        This is the executor's hot path: its statements are built once, at import.
        """

        def write() -> None:
            with self._write() as conn:
                self._finish_task(
                    conn,
                    workflow_id,
                    task_id,
                    checkpoint,
                    output_preview,
                    started_at,
                    attempts_delta,
                    completes,
                    new_tasks,
                )
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)

        self._retrying(write)

    def _finish_task(
        self,
        conn: Connection,
        workflow_id: str,
        task_id: str,
        checkpoint: Checkpoint | None,
        output_preview: str | None,
        started_at: float,
        attempts_delta: int,
        completes: Sequence[str] = (),
        new_tasks: Sequence[NewTask] = (),
    ) -> None:
        now = time.time()
        continued = checkpoint is not None and checkpoint.kind == "continuation"
        status = TaskStatus.CONTINUED if continued else TaskStatus.SUCCESSFUL
        if checkpoint is not None:
            conn.execute(
                self._insert_checkpoint,
                {
                    "workflow_id": workflow_id,
                    "task_id": task_id,
                    "kind": checkpoint.kind,
                    "data": checkpoint.data,
                    "blob": checkpoint.blob,
                    "size": checkpoint.size,
                },
            )
        conn.execute(
            _FINISH_TASK,
            {
                "b_workflow": workflow_id,
                "b_task": task_id,
                "b_status": status.value,
                "b_started": started_at,
                "b_ended": None if continued else now,
                "b_delta": attempts_delta,
                "b_preview": output_preview,
                "b_output": None if continued or checkpoint is None else task_id,
            },
        )
        if completes:
            conn.execute(
                _COMPLETE_TASKS,
                {
                    "b_workflow": workflow_id,
                    "b_tasks": list(completes),
                    "b_ended": now,
                    "b_preview": output_preview,
                    "b_output": task_id if checkpoint is not None else None,
                },
            )
        if new_tasks:
            # Ordered after everything so far without reading the table first.
            self._insert_tasks(conn, workflow_id, new_tasks, first_seq=_seq_now())

    def task_failed(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        log: tuple[float, str] | None = None,
    ) -> None:
        """``log`` is the last attempt's (start time, captured text)."""

        def write() -> None:
            with self._write() as conn:
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)
                conn.execute(
                    tasks.update()
                    .where(tasks.c.workflow_id == workflow_id)
                    .where(tasks.c.task_id == task_id)
                    .values(
                        status=TaskStatus.FAILED.value,
                        started_at=sa.func.coalesce(tasks.c.started_at, started_at),
                        ended_at=time.time(),
                        attempts=tasks.c.attempts + attempts_delta,
                        error=error,
                    )
                )

        self._retrying(write)

    # ---------------------------------------------------------------------- logs

    def _save_log(
        self, conn: Connection, workflow_id: str, task_id: str, started_at: float, text: str
    ) -> None:
        values = {
            "workflow_id": workflow_id,
            "task_id": task_id,
            "attempt_started_at": started_at,
            "text": text,
            "updated_at": time.time(),
        }
        insert = self._dialect_insert(task_logs).values(**values)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["workflow_id", "task_id", "attempt_started_at"],
                set_={"text": insert.excluded.text, "updated_at": insert.excluded.updated_at},
            )
        )

    def save_logs(self, logs: Sequence[tuple[str, str, float, str]]) -> None:
        """Write running attempts' logs: (workflow_id, task_id, attempt started_at, text)."""
        if not logs:
            return

        def write() -> None:
            with self._write() as conn:
                for workflow_id, task_id, started_at, text in logs:
                    self._save_log(conn, workflow_id, task_id, started_at, text)

        self._retrying(write)

    def task_logs(self, workflow_id: str, task_id: str) -> list[TaskLog]:
        """Each attempt's captured output, oldest attempt first (attempt 1, 2, ...)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(task_logs)
                .where(task_logs.c.workflow_id == workflow_id)
                .where(task_logs.c.task_id == task_id)
                .order_by(task_logs.c.attempt_started_at)
            )
            return [
                TaskLog(
                    attempt=i,
                    started_at=row.attempt_started_at,
                    text=row.text,
                    updated_at=row.updated_at,
                )
                for i, row in enumerate(rows, start=1)
            ]

    def set_task_status(
        self, workflow_id: str, task_ids: Sequence[str], status: TaskStatus
    ) -> None:
        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    tasks.update()
                    .where(tasks.c.workflow_id == workflow_id)
                    .where(tasks.c.task_id.in_(list(task_ids)))
                    .where(tasks.c.status.in_(_NOT_DONE))
                    .values(status=status.value)
                )

        self._retrying(write)

    def load_tasks(self, workflow_id: str) -> list[TaskRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tasks).where(tasks.c.workflow_id == workflow_id).order_by(tasks.c.seq)
            )
            return [_task_record(row) for row in rows]

    def get_task(self, workflow_id: str, task_id: str) -> TaskRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(tasks)
                .where(tasks.c.workflow_id == workflow_id)
                .where(tasks.c.task_id == task_id)
            ).first()
        if row is None:
            self.get_workflow(workflow_id)  # raises WorkflowNotFoundError first
            raise TaskNotFoundError(workflow_id, task_id)
        return _task_record(row)

    def load_checkpoint(self, workflow_id: str, task_id: str) -> Checkpoint | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(checkpoints)
                .where(checkpoints.c.workflow_id == workflow_id)
                .where(checkpoints.c.task_id == task_id)
            ).first()
        if row is None:
            return None
        return Checkpoint(kind=row.kind, data=row.data, blob=row.blob, size=row.size)

    def load_checkpoints(self, workflow_id: str, task_ids: Sequence[str]) -> dict[str, Checkpoint]:
        if not task_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(checkpoints)
                .where(checkpoints.c.workflow_id == workflow_id)
                .where(checkpoints.c.task_id.in_(list(task_ids)))
            )
            return {
                row.task_id: Checkpoint(kind=row.kind, data=row.data, blob=row.blob, size=row.size)
                for row in rows
            }


def _seq_now() -> int:
    """Task order for continuations: microseconds, so later expansions sort later."""
    return time.time_ns() // 1000


_FINISH_TASK = (
    tasks.update()
    .where(tasks.c.workflow_id == sa.bindparam("b_workflow"))
    .where(tasks.c.task_id == sa.bindparam("b_task"))
    .values(
        status=sa.bindparam("b_status"),
        started_at=sa.func.coalesce(tasks.c.started_at, sa.bindparam("b_started")),
        ended_at=sa.bindparam("b_ended"),
        attempts=tasks.c.attempts + sa.bindparam("b_delta"),
        output_preview=sa.bindparam("b_preview"),
        output_task_id=sa.bindparam("b_output"),
        error=None,
    )
)
_COMPLETE_TASKS = (
    tasks.update()
    .where(tasks.c.workflow_id == sa.bindparam("b_workflow"))
    .where(tasks.c.task_id.in_(sa.bindparam("b_tasks", expanding=True)))
    .values(
        status=TaskStatus.SUCCESSFUL.value,
        ended_at=sa.bindparam("b_ended"),
        output_preview=sa.bindparam("b_preview"),
        output_task_id=sa.bindparam("b_output"),
    )
)

_NOT_DONE = [
    TaskStatus.PENDING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.WAITING.value,
    TaskStatus.FAILED.value,
    TaskStatus.CANCELED.value,
]

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


def _task_record(row: Any) -> TaskRecord:
    import json

    return TaskRecord(
        workflow_id=row.workflow_id,
        task_id=row.task_id,
        seq=row.seq,
        name=row.name,
        parent_task_id=row.parent_task_id,
        upstream=json.loads(row.upstream or "[]"),
        status=TaskStatus(row.status),
        attempts=row.attempts,
        started_at=row.started_at,
        ended_at=row.ended_at,
        error=row.error,
        output_preview=row.output_preview,
        output_task_id=row.output_task_id,
        user_metadata=json.loads(row.user_metadata or "{}"),
    )


class SqliteStore(SqlStore):
    """SQLite: many Ray worker processes write one file at once.

    WAL lets readers proceed during a write; the busy timeout makes writers queue instead
    of failing; writes open with BEGIN IMMEDIATE so two writers never deadlock upgrading a
    shared lock (pysqlite's own deferred BEGIN would).
    """

    @classmethod
    def open(cls, url: str) -> SqliteStore:
        path = make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's events emit BEGIN, not pysqlite
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("gnomon_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return cls(url, engine)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(gnomon_write=True)
            with conn.begin():
                yield conn

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return "locked" in message or "busy" in message

    def _dialect_insert(self, table: sa.Table) -> Any:
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)


class PostgresStore(SqlStore):
    """PostgreSQL: the cluster database. Connections are checked before use so a
    database restart costs a retry, not an error."""

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        return cls(url, engine)

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return super()._is_transient(error) or any(
            word in message
            for word in ("connection", "terminating", "shutting down", "starting up", "timeout")
        )

    def _lock_oldest(self, query: sa.Select) -> sa.Select:
        return query.with_for_update(skip_locked=True)

    def _locked(self, query: sa.Select) -> sa.Select:
        return query.with_for_update()

    def _dialect_insert(self, table: sa.Table) -> Any:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
