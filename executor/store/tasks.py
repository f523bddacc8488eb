"""The store's part for tasks: rows, checkpoints and logs; the executor's hot path.

A mixin of ``SqlStore``: it shares the store's transactions and retry policy. The
statements a task's finish runs are built once, at import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import TaskNotFoundError
from executor.status import TaskStatus, WorkflowStatus
from executor.store.records import Checkpoint, NewTask, TaskLog, TaskRecord, dump_json
from executor.store.schema import checkpoints, task_logs, tasks, workflows

T = TypeVar("T")


class TaskStore:
    # Provided by SqlStore.
    _write: Callable[[], AbstractContextManager[Connection]]
    _read: Callable[[], AbstractContextManager[Connection]]
    _retrying: Callable[[Callable[[], T]], T]
    _insert_checkpoint: Any
    _dialect_insert: Callable[[sa.Table], Any]
    _insert_ignoring_duplicates: Callable[[sa.Table], Any]
    get_workflow: Callable[[str], Any]

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
                    # Not IN (...): an expanding list cannot go with executemany.
                    .where(tasks.c.status != TaskStatus.SUCCESSFUL.value)
                    .where(tasks.c.status != TaskStatus.CONTINUED.value)
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
        graph_output: bool = True,
    ) -> bool:
        """Checkpoint a task's output (or, with kind "continuation", the DAG it returned).

        ``completes`` are the tasks whose continuations end in this task: they finish
        with it, pointing at its checkpoint. ``new_tasks`` are a continuation's tasks.
        A value that is the workflow's output also records the workflow SUCCESSFUL, in
        the same transaction; True if it did. Only its graph's output can be that: a
        task known not to be (``graph_output=False``) skips the look. This is the
        executor's hot path: its statements are built once, at import.
        """

        if checkpoint is not None and checkpoint.kind == "value" and not new_tasks and not log:
            # The usual finish: a dialect may do it in one statement.
            ended = time.time()
            finished = self._retrying(
                lambda: self._finish_value_at_once(
                    workflow_id,
                    task_id,
                    checkpoint,
                    output_preview,
                    started_at,
                    ended,
                    attempts_delta,
                    completes,
                    graph_output,
                )
            )
            if finished is not None:
                return finished

        def write() -> bool:
            with self._write() as conn:
                finished = self._finish_task(
                    conn,
                    workflow_id,
                    task_id,
                    checkpoint,
                    output_preview,
                    started_at,
                    attempts_delta,
                    completes,
                    new_tasks,
                    graph_output,
                )
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)
                return finished

        return self._retrying(write)

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
    ) -> bool | None:
        """``task_finished`` for a checkpointed value, in one statement: whether it
        recorded the workflow's outcome; None where the dialect has no such statement
        (the transaction in ``_finish_task`` is used)."""
        return None

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
        graph_output: bool = True,
    ) -> bool:
        """The finish's statements, in ``conn``'s transaction; True if it also recorded
        the workflow's outcome."""
        now = time.time()
        continued = checkpoint is not None and checkpoint.kind == "continuation"
        status = TaskStatus.CONTINUED if continued else TaskStatus.SUCCESSFUL
        if checkpoint is not None:
            inserted = conn.execute(
                self._insert_checkpoint,
                {
                    "workflow_id": workflow_id,
                    "task_id": task_id,
                    "kind": checkpoint.kind,
                    "data": checkpoint.data,
                    "blob": checkpoint.blob,
                    "size": checkpoint.size,
                },
            ).first()
            # RETURNING, not rowcount: psycopg reports -1 for a skipped ON CONFLICT.
            if inserted is None:
                return False  # checkpointed already: the first result and its row stand
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
        if checkpoint is None or continued or not graph_output:
            return False  # no stored output (the manager records the outcome), or not it
        outcome = conn.execute(
            _FINISH_WORKFLOW,
            {
                "b_workflow": workflow_id,
                "b_outputs": [task_id, *completes],
                "b_preview": output_preview,
                "b_ended": now,
            },
        )
        return outcome.rowcount > 0

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

    def any_finished(self, workflow_id: str, task_ids: Sequence[str]) -> bool:
        """Whether any of these tasks has recorded its finish (a checkpoint or a
        continuation). A Ray call that Ray runs again after its worker died asks before
        it starts: the tasks it had finished must not run twice. Retried like a write."""
        return self._retrying(lambda: self._any_finished(workflow_id, task_ids))

    def _any_finished(self, workflow_id: str, task_ids: Sequence[str]) -> bool:
        with self._read() as conn:
            row = conn.execute(
                sa.select(tasks.c.task_id)
                .where(tasks.c.workflow_id == workflow_id)
                .where(tasks.c.task_id.in_(list(task_ids)))
                .where(tasks.c.status.in_(_FINISHED))
                .limit(1)
            ).first()
        return row is not None

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

#: A finished value that is the workflow's output (its own task's, or through a chain of
#: continuations) records the workflow's outcome with the checkpoint. The output and the
#: SUCCESSFUL status are then one commit: a manager that dies between the two no longer
#: leaves a finished workflow to be resumed. It also spares the manager a write (about
#: 2% of a three-task workflow's CPU, median of 12 interleaved rounds). Only a RUNNING
#: workflow: a cancel that came first stands.
_FINISH_WORKFLOW = (
    workflows.update()
    .where(workflows.c.workflow_id == sa.bindparam("b_workflow"))
    .where(workflows.c.status == WorkflowStatus.RUNNING.value)
    .where(workflows.c.output_task_id.in_(sa.bindparam("b_outputs", expanding=True)))
    .values(
        status=WorkflowStatus.SUCCESSFUL.value,
        output_preview=sa.bindparam("b_preview"),
        error=None,
        ended_at=sa.bindparam("b_ended"),
        owner=None,
        lease_expires_at=None,
    )
)

#: Statuses of a task whose finish is recorded: running it again would run it twice.
_FINISHED = [TaskStatus.SUCCESSFUL.value, TaskStatus.CONTINUED.value]

_NOT_DONE = [
    TaskStatus.PENDING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.WAITING.value,
    TaskStatus.FAILED.value,
    TaskStatus.CANCELED.value,
]


def _task_record(row: Any) -> TaskRecord:

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
