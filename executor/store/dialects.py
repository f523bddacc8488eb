"""Dialect quirks, one subclass each, with why."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from executor.status import TaskStatus, WorkflowStatus
from executor.store.direct import DirectStatements
from executor.store.records import Checkpoint, NewTask, dump_json
from executor.store.sql import SqlStore


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


#: Seconds to wait for a connection: a host that drops packets (not one that refuses)
#: would otherwise hang each connect for the kernel's TCP timeout, minutes, before a
#: retry or a clear 503.
_CONNECT_TIMEOUT = 5


class PostgresStore(SqlStore):
    """PostgreSQL: the cluster database, a network round trip away.

    Round trips are what a task's finish costs here, so:
    - Writes skip the pool's checkout ping: they retry on a lost connection anyway
      (``_retrying``), and a database restart invalidates the whole pool at the first one.
    - Reads are not retried, so they keep the ping; they run in autocommit, because under
      READ COMMITTED a transaction adds BEGIN and ROLLBACK and no consistency.
    - Creating a workflow with its tasks, a task's usual finish (a checkpoint, no log,
      no continuation) and a batch of outcomes are one statement each, sent on a
      connection of the thread's own (``DirectStatements``).
    """

    def __init__(self, url: str, engine: sa.Engine, checked: sa.Engine) -> None:
        super().__init__(url, engine)
        self.checked_engine = checked
        self._direct = DirectStatements(engine, _CONNECT_TIMEOUT)
        self._reader = checked.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        options: dict[str, Any] = {
            "pool_size": 5,
            "max_overflow": 10,
            "connect_args": {"connect_timeout": _CONNECT_TIMEOUT},
        }
        engine = sa.create_engine(url, **options)
        checked = sa.create_engine(url, pool_pre_ping=True, **options)
        return cls(url, engine, checked)

    def dispose(self) -> None:
        super().dispose()
        self.checked_engine.dispose()
        self._direct.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    def _insert_workflow(self, row: dict[str, Any], new_tasks: Sequence[NewTask]) -> bool:
        if not new_tasks:  # the statement below reports a creation through a task's row
            return super()._insert_workflow(row, new_tasks)
        # One JSON document, not six arrays: psycopg inspects every element of an array
        # parameter to pick its type, which was an eighth of a submit's CPU time.
        rows = [
            [
                t.task_id,
                seq,
                t.name,
                t.parent_task_id,
                dump_json(t.upstream),
                dump_json(t.user_metadata),
            ]
            for seq, t in enumerate(new_tasks)
        ]
        params = {**row, "tasks": dump_json(rows)}
        return bool(self._direct.execute(_CREATE_WORKFLOW, params))

    def _finish_value_at_once(
        self,
        workflow_id: str,
        task_id: str,
        checkpoint: Checkpoint,
        output_preview: str | None,
        started_at: float,
        ended_at: float,
        attempts_delta: int,
        completes: Sequence[str],
        graph_output: bool,
    ) -> bool:
        params = {
            "workflow": workflow_id,
            "task": task_id,
            "kind": checkpoint.kind,
            "data": checkpoint.data,
            "blob": checkpoint.blob,
            "size": checkpoint.size,
            "started": started_at,
            "ended": ended_at,
            "delta": attempts_delta,
            "preview": output_preview,
            "completes": list(completes),
        }
        if not graph_output:
            self._direct.execute(_FINISH_TASK_ONLY, params)
            return False
        return bool(self._direct.execute(_FINISH_TASK, params))

    def _any_finished(self, workflow_id: str, task_ids: Sequence[str]) -> bool:
        params = {"workflow": workflow_id, "tasks": list(task_ids)}
        return bool(self._direct.execute(_ANY_FINISHED, params))

    def _finish_outcomes(
        self, owner: str, rows: Sequence[tuple[str, str, str | None, str | None, float]]
    ) -> None:
        self._direct.execute(_FINISH_OUTCOMES, {"owner": owner, "outcomes": dump_json(rows)})

    def _lock_name(self, conn: Connection, name: str) -> None:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"gnomon-slots:{name}"},
        )

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


_CHECKPOINT = """
checkpoint AS (
    INSERT INTO gnomon_checkpoints (workflow_id, task_id, kind, data, blob, size)
    VALUES (%(workflow)s, %(task)s, %(kind)s, %(data)s, %(blob)s, %(size)s)
    ON CONFLICT DO NOTHING
    RETURNING task_id
)"""
_TASK_FINISHED = f"""
UPDATE gnomon_tasks
SET status = '{TaskStatus.SUCCESSFUL.value}',
    started_at = coalesce(started_at, %(started)s),
    ended_at = %(ended)s,
    attempts = attempts + %(delta)s,
    output_preview = %(preview)s,
    output_task_id = %(task)s,
    error = NULL
WHERE workflow_id = %(workflow)s AND task_id = %(task)s
  AND EXISTS (SELECT 1 FROM checkpoint)"""

#: ``TaskStore.task_finished`` in one statement (one round trip, atomic): the checkpoint,
#: then - only if it was the first for the task - the task's row, the rows of the tasks
#: whose continuations end in it, and the workflow's outcome if this is its output (as
#: ``_FINISH_WORKFLOW`` in tasks.py). A row comes back if the workflow was finished.
#: PostgreSQL runs a WITH's data-modifying parts exactly once even when nothing
#: references them.
_FINISH_TASK = f"""
WITH {_CHECKPOINT}, finished AS ({_TASK_FINISHED}
    RETURNING task_id
), completed AS (
    UPDATE gnomon_tasks
    SET status = '{TaskStatus.SUCCESSFUL.value}',
        ended_at = %(ended)s,
        output_preview = %(preview)s,
        output_task_id = %(task)s
    WHERE workflow_id = %(workflow)s AND task_id = ANY(%(completes)s::text[])
      AND EXISTS (SELECT 1 FROM checkpoint)
    RETURNING task_id
)
UPDATE gnomon_workflows
SET status = '{WorkflowStatus.SUCCESSFUL.value}', output_preview = %(preview)s, error = NULL,
    ended_at = %(ended)s, owner = NULL, lease_expires_at = NULL
WHERE workflow_id = %(workflow)s AND status = '{WorkflowStatus.RUNNING.value}'
  AND (output_task_id = %(task)s OR output_task_id = ANY(%(completes)s::text[]))
  AND EXISTS (SELECT 1 FROM checkpoint)
RETURNING 1
"""

#: The same for a task that is not its graph's output, so neither completes anything nor
#: can be the workflow's: the checkpoint and the task's row. Measured alone (1,500 x 3
#: finishes in one process): 0.20 against 0.36 ms of PostgreSQL's CPU per finish, 0.55
#: against 0.86 ms of wall time.
_FINISH_TASK_ONLY = f"WITH {_CHECKPOINT}{_TASK_FINISHED}"

#: ``TaskStore.any_finished``: asked by a Ray call that Ray runs again.
_ANY_FINISHED = f"""
SELECT 1 FROM gnomon_tasks
WHERE workflow_id = %(workflow)s AND task_id = ANY(%(tasks)s::text[])
  AND status IN ('{TaskStatus.SUCCESSFUL.value}', '{TaskStatus.CONTINUED.value}')
LIMIT 1
"""

#: ``SqlStore.finish_many`` in one statement: the outcomes travel as one JSON array of
#: [workflow id, status, output preview, error, ended at].
_FINISH_OUTCOMES = """
UPDATE gnomon_workflows AS w
SET status = o->>1, output_preview = o->>2, error = o->>3,
    ended_at = (o->>4)::double precision, owner = NULL, lease_expires_at = NULL
FROM jsonb_array_elements(%(outcomes)s::jsonb) AS o
WHERE w.workflow_id = o->>0 AND w.owner = %(owner)s
"""

#: ``SqlStore._insert_workflow`` in one statement: the workflow row, and its tasks only
#: if the row is new (and there is at least one). A row comes back if it was created.
_CREATE_WORKFLOW = f"""
WITH workflow AS (
    INSERT INTO gnomon_workflows (
        workflow_id, name, status, owner, lease_expires_at, started_at, trigger,
        user_metadata, graph, graph_blob, output_task_id, created_at
    )
    VALUES (
        %(workflow_id)s, %(name)s, %(status)s, %(owner)s, %(lease_expires_at)s,
        %(started_at)s, %(trigger)s, %(user_metadata)s, %(graph)s, %(graph_blob)s,
        %(output_task_id)s, %(created_at)s
    )
    ON CONFLICT DO NOTHING
    RETURNING workflow_id
)
INSERT INTO gnomon_tasks (
    workflow_id, task_id, seq, name, parent_task_id, upstream, status, attempts, user_metadata
)
SELECT workflow.workflow_id, t.task_id, t.seq, t.name, t.parent_task_id, t.upstream,
       '{TaskStatus.PENDING.value}', 0, t.user_metadata
FROM workflow, (
    SELECT r->>0 AS task_id, (r->>1)::bigint AS seq, r->>2 AS name,
           r->>3 AS parent_task_id, r->>4 AS upstream, r->>5 AS user_metadata
    FROM jsonb_array_elements(%(tasks)s::jsonb) AS r
) AS t
RETURNING 1
"""
