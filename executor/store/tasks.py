"""The store's part for tasks: rows, checkpoints and logs; the executor's hot path."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import TaskNotFoundError, WorkflowNotFoundError
from executor.status import TaskStatus, WorkflowStatus
from executor.store.core import SqlCore
from executor.store.records import (
    Checkpoint,
    Expand,
    NewTask,
    TaskFinish,
    TaskLog,
    TaskRecord,
    dump_json,
)
from executor.store.statements import FINISHED, HELD, TASK_FIELDS, json_task_row

#: Statuses of a task that has not ended: a cancel ends them CANCELED.
_UNFINISHED = [
    TaskStatus.PENDING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.WAITING.value,
    TaskStatus.QUEUED.value,
    TaskStatus.RETRYING.value,
]
#: Statuses a task's row may be moved out of by ``set_task_status``.
_NOT_DONE = [
    TaskStatus.PENDING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.WAITING.value,
    TaskStatus.QUEUED.value,
    TaskStatus.RETRYING.value,
    TaskStatus.FAILED.value,
    TaskStatus.CANCELED.value,
]


class TaskStore(SqlCore):
    def _insert_tasks(
        self, conn: Connection, workflow_id: str, new_tasks: Sequence[NewTask], first_seq: int
    ) -> None:
        """Insert task rows, skipping ids that exist already (a workflow created twice)."""
        if not new_tasks:
            return
        conn.execute(
            self.sql.insert_tasks,
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
                    "pool": t.pool,
                }
                for i, t in enumerate(new_tasks)
            ],
        )

    # --------------------------------------------------------------------- tasks

    def tasks_started(self, workflow_id: str, started: Sequence[tuple[str, float]]) -> None:
        if not started:
            return

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    self.sql.tasks_started,
                    [
                        {"workflow": workflow_id, "t_task": task_id, "t_started": at}
                        for task_id, at in started
                    ],
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
        log: tuple[float, str] | None = None,
        graph_output: bool = True,
        pool: str | None = None,
        hand_to: str | None = None,
    ) -> TaskFinish:
        params = self._finish_params(
            workflow_id, task_id, checkpoint, output_preview, started_at, attempts_delta, completes
        )
        if pool is not None:
            params.update(
                s_pool=pool,
                s_workflow=workflow_id,
                s_task=task_id,
                s_now=params["ended"],
                s_next=hand_to,
            )
        if self.direct is not None and params["output"] is not None and not log:
            # The usual finish: one statement, one round trip.
            return self._retrying(lambda: self._finish_at_once(params, graph_output, pool))

        def write() -> TaskFinish:
            with self._write() as conn:
                finished = self._finish_task(conn, params, checkpoint, graph_output)
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)
                if pool is None:
                    return TaskFinish(finished)
                return TaskFinish(finished, *self._slot_given_back(conn, params))

        return self._retrying(write)

    def _slot_given_back(self, conn: Connection, params: dict[str, Any]) -> tuple[bool, bool]:
        """Give a task's pool slot (or place in line) back in ``conn``'s transaction
        (``PoolStatements``' parameters), or hand it on to the task ``s_next`` if one is
        named and nobody waits; whether live waiters stand in the line, and whether it
        was handed on."""
        forms = self.sql.pools.forms
        if params.get("s_next") is not None and self._run_in(conn, forms.hand_on, params):
            return False, True
        waiting = None
        if self._run_in(conn, forms.release, params) == [(HELD,)]:
            waiting = self._run_in(conn, forms.uncount, params)
        if not waiting:  # nothing counted down: ask on its own
            waiting = self._run_in(conn, forms.waiting, params)
        return bool(waiting[0][0]), False

    def _finish_params(
        self,
        workflow_id: str,
        task_id: str,
        checkpoint: Checkpoint | None,
        output_preview: str | None,
        started_at: float,
        attempts_delta: int,
        completes: Sequence[str],
    ) -> dict[str, Any]:
        """The parameters of every statement of a task's finish."""
        continued = checkpoint is not None and checkpoint.kind == "continuation"
        params = {
            "workflow": workflow_id,
            "task": task_id,
            "task_status": (TaskStatus.CONTINUED if continued else TaskStatus.SUCCESSFUL).value,
            "started": started_at,
            "ended": self.clock(),
            "delta": attempts_delta,
            "preview": output_preview,
            # The task whose checkpoint holds the value; a continuation's comes later.
            "output": task_id if checkpoint is not None and not continued else None,
            "completes": list(completes),
            "outputs": [task_id, *completes],
        }
        if checkpoint is not None:
            params.update(
                ck_kind=checkpoint.kind,
                ck_data=checkpoint.data,
                ck_blob=checkpoint.blob,
                ck_size=checkpoint.size,
            )
        return params

    def _finish_at_once(
        self, params: dict[str, Any], graph_output: bool, pool: str | None
    ) -> TaskFinish:
        forms = self.sql.direct
        assert forms is not None
        if pool is not None:
            form = forms.finish_pooled_task if graph_output else forms.finish_pooled_task_only
            outcome, waiting, handed = self._send(form, params)[0]
            return TaskFinish(bool(outcome), bool(waiting), bool(handed))
        if not graph_output:
            self._send(forms.finish_task_only, params)
            return TaskFinish(False)
        return TaskFinish(bool(self._send(forms.finish_task, params)))

    def _finish_task(
        self,
        conn: Connection,
        params: dict[str, Any],
        checkpoint: Checkpoint | None,
        graph_output: bool = True,
    ) -> bool:
        """A finish's statements in ``conn``'s transaction (``params`` as
        ``task_finished`` builds them); True if it also recorded the workflow's outcome."""
        forms = self.sql.forms
        # The compiled forms take lists as JSON (PostgreSQL's one-statement forms take arrays).
        params = {
            **params,
            "j_completes": dump_json(params["completes"]),
            "j_outputs": dump_json(params["outputs"]),
        }
        if checkpoint is not None and not self._run_in(conn, forms.insert_checkpoint, params):
            return False  # checkpointed already: the first result and its row stand
        self._run_in(conn, forms.finish_task, params)
        if params["completes"]:
            self._run_in(conn, forms.complete_tasks, params)
        if params["output"] is None or not graph_output:
            return False  # no stored output (the manager records the outcome), or not it
        if not self._run_in(conn, forms.finish_workflow, params):
            return False
        self._run_in(conn, forms.alert_outcome, params)  # the outbox, with the outcome
        return True

    def task_continued(
        self,
        workflow_id: str,
        task_id: str,
        started_at: float,
        attempts_delta: int,
        expand: Expand,
        log: tuple[float, str] | None = None,
    ) -> WorkflowStatus:
        def write() -> WorkflowStatus:
            with self._write() as conn:
                checkpoint, new_tasks = expand(
                    lambda counts: self._reserve_ids(conn, workflow_id, counts)
                )
                params = self._finish_params(
                    workflow_id, task_id, checkpoint, None, started_at, attempts_delta, ()
                )
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)
                # Ordered after everything so far without reading the table first.
                return self._continued_in(conn, params, new_tasks, _seq_now())

        return self._retrying(write)

    def _continued_in(
        self, conn: Connection, params: dict[str, Any], new_tasks: Sequence[NewTask], seq: int
    ) -> WorkflowStatus:
        """A continuation's checkpoint, then, if it was the first for the task, the task's
        row and the new tasks, in ``conn``'s transaction; the workflow's status."""
        if self.sql.direct is not None:
            rows = [json_task_row(task, seq + i) for i, task in enumerate(new_tasks)]
            form, params = self.sql.direct.continue_task, {**params, "tasks": dump_json(rows)}
            return WorkflowStatus(self._run_in(conn, form, params)[0][0])
        forms = self.sql.forms
        if self._run_in(conn, forms.insert_checkpoint, params):
            self._run_in(conn, forms.finish_task, params)
            if new_tasks:
                self._run_many(
                    conn, forms.insert_task, _new_task_rows(params["workflow"], new_tasks, seq)
                )
        return WorkflowStatus(self._run_in(conn, forms.workflow_status, params)[0][0])

    def _reserve_ids(
        self, conn: Connection, workflow_id: str, counts: dict[str, int]
    ) -> dict[str, int]:
        """``ReserveIds`` in ``conn``'s transaction."""
        if self.sql.direct is not None:
            bases = [[base, _numbered(base), n] for base, n in sorted(counts.items())]
            ends = self._run_in(
                conn,
                self.sql.direct.reserve_ids,
                {"workflow": workflow_id, "bases": dump_json(bases)},
            )
            return {base: int(end) - counts[base] for base, end in ends}
        first: dict[str, int] = {}
        for base, n in sorted(counts.items()):
            one = {"workflow": workflow_id, "base": base, "numbered": _numbered(base), "n": n}
            ((end,),) = self._run_in(conn, self.sql.forms.reserve_ids, one)
            first[base] = int(end) - n
        return first

    def tasks_canceled(self, workflow_id: str) -> None:
        t = self.tables.tasks

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    t.update()
                    .where(t.c.workflow_id == workflow_id, t.c.status.in_(_UNFINISHED))
                    .values(status=TaskStatus.CANCELED.value)
                )

        self._retrying(write)

    def task_crashed(self, workflow_id: str, task_id: str) -> int:
        t = self.tables.tasks

        def write() -> int:
            with self._write() as conn:
                crashes = conn.execute(
                    t.update()
                    .where(t.c.workflow_id == workflow_id, t.c.task_id == task_id)
                    .values(crashes=t.c.crashes + 1)
                    .returning(t.c.crashes)
                ).scalar_one()
                return int(crashes)

        return self._retrying(write)

    def task_failed(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        log: tuple[float, str] | None = None,
    ) -> None:
        ended = {"status": TaskStatus.FAILED.value, "ended_at": self.clock()}
        self._attempt_failed(workflow_id, task_id, error, started_at, attempts_delta, log, ended)

    def task_backoff(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        wake_at: float,
        next_attempt: int,
        max_attempts: int,
        log: tuple[float, str] | None = None,
    ) -> None:
        waits = {
            "status": TaskStatus.RETRYING.value,
            "wake_at": wake_at,
            "next_attempt": next_attempt,
            "max_attempts": max_attempts,
        }
        self._attempt_failed(
            workflow_id, task_id, error, started_at, attempts_delta, log, waits, unfinished=True
        )

    def _attempt_failed(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        log: tuple[float, str] | None,
        values: dict[str, Any],
        unfinished: bool = False,
    ) -> None:
        """An attempt that raised ``error``: its log, its count and ``values`` in one
        write; ``unfinished``: only while the task has not finished meanwhile."""
        t = self.tables.tasks
        query = t.update().where(t.c.workflow_id == workflow_id, t.c.task_id == task_id)
        if unfinished:
            query = query.where(t.c.status.not_in(FINISHED))
        query = query.values(
            started_at=sa.func.coalesce(t.c.started_at, started_at),
            attempts=t.c.attempts + attempts_delta,
            error=error,
            **values,
        )

        def write() -> None:
            with self._write() as conn:
                if log:
                    self._save_log(conn, workflow_id, task_id, *log)
                conn.execute(query)

        self._retrying(write)

    def set_task_status(
        self, workflow_id: str, task_ids: Sequence[str], status: TaskStatus
    ) -> None:
        t = self.tables.tasks

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    t.update()
                    .where(t.c.workflow_id == workflow_id, t.c.task_id.in_(list(task_ids)))
                    .where(t.c.status.in_(_NOT_DONE))
                    .values(status=status.value)
                )

        self._retrying(write)

    def finished_tasks(self, workflow_id: str, task_ids: Sequence[str]) -> set[str]:
        params = {"workflow": workflow_id, "tasks": list(task_ids)}
        if self.direct is not None:
            assert self.sql.direct is not None
            forms = self.sql.direct
            return self._retrying(
                lambda: {row[0] for row in self._send(forms.finished_tasks, params)}
            )

        def read() -> set[str]:
            with self._reader().connect() as conn:
                return set(conn.execute(self.sql.finished_tasks, params).scalars())

        return self._retrying(read)

    # ---------------------------------------------------------------------- logs

    def _save_log(
        self, conn: Connection, workflow_id: str, task_id: str, started_at: float, text: str
    ) -> None:
        self._run_in(
            conn,
            self.sql.forms.save_log,
            {
                "workflow": workflow_id,
                "task": task_id,
                "l_started": started_at,
                "l_text": text,
                "l_updated": self.clock(),
            },
        )

    def save_logs(self, logs: Sequence[tuple[str, str, float, str]]) -> None:
        if not logs:
            return

        def write() -> None:
            with self._write() as conn:
                for workflow_id, task_id, started_at, text in logs:
                    self._save_log(conn, workflow_id, task_id, started_at, text)

        self._retrying(write)

    def task_logs(self, workflow_id: str, task_id: str) -> list[TaskLog]:
        logs = self.tables.task_logs
        with self._read() as conn:
            rows = conn.execute(
                sa.select(logs)
                .where(logs.c.workflow_id == workflow_id, logs.c.task_id == task_id)
                .order_by(logs.c.attempt_started_at)
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

    # ------------------------------------------------------------------- reading

    def load_tasks(self, workflow_id: str) -> list[TaskRecord]:
        t = self.tables.tasks
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.workflow_id == workflow_id).order_by(t.c.seq)
            )
            return [_task_record(row) for row in rows]

    def get_task(self, workflow_id: str, task_id: str) -> TaskRecord:
        t, w = self.tables.tasks, self.tables.workflows
        with self._read() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.workflow_id == workflow_id, t.c.task_id == task_id)
            ).first()
            if row is None:
                known = conn.execute(
                    sa.select(w.c.workflow_id).where(w.c.workflow_id == workflow_id)
                ).first()
        if row is None:
            if known is None:
                raise WorkflowNotFoundError(workflow_id)
            raise TaskNotFoundError(workflow_id, task_id)
        return _task_record(row)

    def load_checkpoint(self, workflow_id: str, task_id: str) -> Checkpoint | None:
        with self._read() as conn:
            return self._checkpoint_in(conn, workflow_id, task_id)

    def _checkpoint_in(self, conn: Connection, workflow_id: str, task_id: str) -> Checkpoint | None:
        c = self.tables.checkpoints
        row = conn.execute(
            sa.select(c).where(c.c.workflow_id == workflow_id, c.c.task_id == task_id)
        ).first()
        return None if row is None else _checkpoint(row)

    def load_checkpoints(self, workflow_id: str, task_ids: Sequence[str]) -> dict[str, Checkpoint]:
        if not task_ids:
            return {}
        c = self.tables.checkpoints
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c).where(c.c.workflow_id == workflow_id, c.c.task_id.in_(list(task_ids)))
            )
            return {row.task_id: _checkpoint(row) for row in rows}


def _escape_like(text: str) -> str:
    """``text`` matched literally by LIKE with ``\\`` as the escape character."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _numbered(base: str) -> str:
    """The LIKE pattern of ``base``'s numbered ids (``base_1``, ``base_2``, ...)."""
    return _escape_like(base) + "\\_%"


def _new_task_rows(
    workflow_id: str, new_tasks: Sequence[NewTask], first_seq: int
) -> list[dict[str, Any]]:
    """``Statements.insert_task``'s parameter sets for ``new_tasks``, in order."""
    return [
        {
            "workflow": workflow_id,
            **{
                "n_" + key: value
                for key, value in zip(TASK_FIELDS, json_task_row(task, first_seq + i), strict=True)
            },
        }
        for i, task in enumerate(new_tasks)
    ]


def _seq_now() -> int:
    """Task order for continuations: microseconds, so later expansions sort later."""
    return time.time_ns() // 1000


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(kind=row.kind, data=row.data, blob=row.blob, size=row.size)


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
        crashes=row.crashes,
        code_version=row.code_version,
        pool=row.pool,
        wake_at=row.wake_at,
        next_attempt=row.next_attempt,
        max_attempts=row.max_attempts,
        queued_s=row.queued_s,
    )
