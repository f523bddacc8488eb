"""The store's hot-path statements, built once from the schema's tables.

Creating a workflow, marking tasks started, finishing a task (its checkpoint, its row,
the rows its continuations complete, the workflow's outcome), expanding a continuation
and recording outcomes run for every task of every workflow. Each is built here, once
per set of tables, with SQLAlchemy Core. A task's finish, a continuation's expansion and
a pool slot's take and release are also compiled once for the database's driver
(``DirectStatement``; ``Statements.forms``, ``PoolStatements.forms``) and run on the
driver's connection inside a store transaction: SQLAlchemy's execution of a statement
costs several times what SQLite spends on it. On PostgreSQL the hottest are composed
into one statement each, from the same parts (``DirectForms``): one round trip. A
schema change is therefore a change to ``schema.py`` alone.

Bind parameters are named after what they carry, never after a column: SQLAlchemy
reserves a column's name for its own parameter in an INSERT or UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from executor.status import TaskStatus, WorkflowStatus
from executor.store import schema
from executor.store.records import NewTask, dump_json


@dataclass(frozen=True)
class Tables:
    """The store's tables; the real ones are ``schema.py``'s (``Tables.of(schema.metadata)``)."""

    workflows: sa.Table
    tasks: sa.Table
    checkpoints: sa.Table
    events: sa.Table
    task_logs: sa.Table
    settings: sa.Table
    task_names: sa.Table
    task_attempts: sa.Table
    notify_routes: sa.Table
    outbox: sa.Table
    backfills: sa.Table
    backfill_ticks: sa.Table
    pools: sa.Table
    pool_slots: sa.Table
    pool_starts: sa.Table
    counters: sa.Table

    @classmethod
    def of(cls, metadata: sa.MetaData) -> Tables:
        found = {table.name.removeprefix("gnomon_"): table for table in metadata.tables.values()}
        return cls(**{name: found[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DirectStatement:
    """A statement compiled for its database's driver (psycopg by default): its SQL, and
    the values of the constants it binds (statuses and the like), which every call sends
    along with its own."""

    sql: str
    constants: dict[str, Any]

    @classmethod
    def compile(cls, statement: sa.sql.Executable, dialect: str = "postgresql") -> DirectStatement:
        compiled = statement.compile(dialect=_DRIVERS[dialect])  # type: ignore[attr-defined]
        required = {name for name, bind in compiled.binds.items() if bind.required}
        constants = {n: v for n, v in compiled.params.items() if n not in required}
        return cls(str(compiled), constants)

    def params(self, given: dict[str, Any]) -> dict[str, Any]:
        return {**self.constants, **given}


@dataclass(frozen=True)
class TaskForms:
    """``Statements``' task finish and continuation statements, compiled for the driver."""

    insert_checkpoint: DirectStatement
    finish_task: DirectStatement
    complete_tasks: DirectStatement
    finish_workflow: DirectStatement
    alert_outcome: DirectStatement
    save_log: DirectStatement
    reserve_ids: DirectStatement
    insert_task: DirectStatement
    workflow_status: DirectStatement


#: The drivers' dialects: psycopg's, and pysqlite's with named parameters (``:name``),
#: which take the same dict of parameters as psycopg's ``%(name)s``.
_DRIVERS: dict[str, Any] = {
    "postgresql": PGDialect_psycopg(),  # type: ignore[no-untyped-call]
    "sqlite": SQLiteDialect_pysqlite(paramstyle="named"),
}
_INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

#: Task statuses whose finish is recorded: running the task again would run it twice.
FINISHED = (TaskStatus.SUCCESSFUL.value, TaskStatus.CONTINUED.value)

#: Workflow columns bound on insert, as ``w_<column key>``.
WORKFLOW_ROW = "w_"

#: A run's outcome (its status) -> the notification event it is.
OUTCOME_EVENTS = {
    WorkflowStatus.FAILED.value: "failure",
    WorkflowStatus.SUCCESSFUL.value: "success",
}
#: The outbox columns an alert's INSERT ... SELECT fills, in order.
ALERT_COLUMNS = [
    "workflow_id",
    "name",
    "event",
    "subject",
    "occurrence",
    "notifier",
    "target",
    "status",
    "error",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "delivered_at",
]


def _compiled(dialect: str, *statements: sa.sql.Executable) -> list[DirectStatement]:
    """Each statement compiled for ``dialect``'s driver, in order."""
    return [DirectStatement.compile(statement, dialect) for statement in statements]


def _p(name: str, **kw: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, **kw)


class Statements:
    """Every hot-path statement over ``tables``, for one dialect (``sqlite`` or
    ``postgresql``); ``direct`` holds the PostgreSQL one-statement forms."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self.tables = tables
        self.insert = _INSERTS[dialect]
        w, t, c, logs = tables.workflows, tables.tasks, tables.checkpoints, tables.task_logs

        self.insert_workflow = (
            self.insert(w)
            .values({col.key: _p(WORKFLOW_ROW + col.key) for col in w.c})
            .on_conflict_do_nothing()
            .returning(w.c.workflow_id)
        )
        self.insert_tasks = self.insert(t).on_conflict_do_nothing()
        self.insert_checkpoint = (
            self.insert(c)
            .values(
                workflow_id=_p("workflow"),
                task_id=_p("task"),
                kind=_p("ck_kind"),
                data=_p("ck_data"),
                blob=_p("ck_blob"),
                size=_p("ck_size"),
            )
            .on_conflict_do_nothing()
            # RETURNING, not rowcount: psycopg reports -1 for a skipped ON CONFLICT.
            .returning(c.c.task_id)
        )
        #: Run with many parameter sets at once (``t_task``, ``t_started``); an IN list
        #: cannot go with executemany, so the finished statuses are two conditions.
        self.tasks_started = (
            t.update()
            .where(t.c.workflow_id == _p("workflow"), t.c.task_id == _p("t_task"))
            .where(t.c.status != FINISHED[0], t.c.status != FINISHED[1])
            .values(
                status=TaskStatus.RUNNING.value,
                started_at=_p("t_started"),
                attempts=t.c.attempts + 1,
            )
        )
        self.finish_task = self._one_task(t).values(self._task_finished(t))
        self.complete_tasks = (
            t.update()
            .where(t.c.workflow_id == _p("workflow"))
            .where(t.c.task_id.in_(_json_list("j_completes", dialect)))
            .values(self._completed(t))
        )
        #: A finished value that is the workflow's output (its own task's, or through a
        #: chain of continuations) records the workflow's outcome with its checkpoint:
        #: the output and the SUCCESSFUL status are one commit. Only a RUNNING workflow:
        #: a cancel that came first stands.
        self.finish_workflow = (
            w.update()
            .where(w.c.workflow_id == _p("workflow"), w.c.status == WorkflowStatus.RUNNING.value)
            .where(w.c.output_task_id.in_(_json_list("j_outputs", dialect)))
            .values(self._workflow_succeeded(w))
            .returning(w.c.workflow_id)
        )
        #: Run with many parameter sets at once (``o_*``), for one owner (``by``).
        self.finish_outcome = (
            w.update()
            .where(w.c.workflow_id == _p("o_workflow"), w.c.owner == _p("by"))
            .values(
                status=_p("o_status"),
                output_preview=_p("o_preview"),
                error=_p("o_error"),
                ended_at=_p("o_ended"),
                owner=None,
                lease_expires_at=None,
            )
        )
        self.finished_tasks = (
            sa.select(t.c.task_id)
            .where(t.c.workflow_id == _p("workflow"), t.c.task_id.in_(_p("tasks", expanding=True)))
            .where(self._finished(t))
        )
        upsert = self.insert(logs).values(
            workflow_id=_p("workflow"),
            task_id=_p("task"),
            attempt_started_at=_p("l_started"),
            text=_p("l_text"),
            updated_at=_p("l_updated"),
        )
        self.save_log = upsert.on_conflict_do_update(
            index_elements=[logs.c.workflow_id, logs.c.task_id, logs.c.attempt_started_at],
            set_={logs.c.text: upsert.excluded.text, logs.c.updated_at: upsert.excluded.updated_at},
        )
        #: Reserve ``n`` task ids of ``base``: the counter's new end comes back. A base's
        #: first reservation starts after the ids of that base the workflow has already
        #: (those of its first graph, which numbers them itself).
        names = tables.task_names
        used = _ids_used(tables, _p("base"), _p("numbered"))
        reserve = self.insert(names).values(
            workflow_id=_p("workflow"), base=_p("base"), next=used + _p("n"), reserved=_p("n")
        )
        self.reserve_ids = reserve.on_conflict_do_update(
            index_elements=[names.c.workflow_id, names.c.base],
            set_={
                names.c.next: names.c.next + reserve.excluded.reserved,
                names.c.reserved: reserve.excluded.reserved,
            },
        ).returning(names.c.next)
        #: A transaction-scoped lock on a text ``key`` (PostgreSQL's advisory locks).
        self.name_lock = sa.select(
            sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(_p("key"), 0))
        )
        r, o = tables.notify_routes, tables.outbox
        self.insert_routes = self.insert(r).values(
            workflow_id=_p("workflow"),
            event=_p("r_event"),
            notifier=_p("r_key"),
            target=_p("r_target"),
        )
        #: A run's outcome into the outbox: a row per route of its event, for the run whose
        #: outcome was just written (``ended``: its end time, as the outcome wrote it; a
        #: batch of outcomes runs it for each, and an outcome not written matches none).
        run = sa.select(*_ended_columns(w)).where(
            w.c.workflow_id == _p("workflow"), w.c.ended_at == _p("ended")
        )
        self.alert_outcome = self.alerts(run.subquery("run"))
        #: A task's failed attempt that is retried: a ``retry`` event for the routes of it.
        retried = (
            sa.select(
                w.c.workflow_id,
                w.c.name,
                r.c.event,
                _p("task").label("subject"),
                _p("a_started").label("occurrence"),
                r.c.notifier,
                r.c.target,
                w.c.status,
                _p("a_error").label("error"),
                *self._pending(_p("a_now")),
            )
            .join_from(w, r, r.c.workflow_id == w.c.workflow_id)
            .where(w.c.workflow_id == _p("workflow"), r.c.event == "retry")
        )
        self.alert_retry = (
            self.insert(o).from_select(ALERT_COLUMNS, retried).on_conflict_do_nothing()
        )
        #: A continuation's new tasks, one row per parameter set (``n_<TASK_FIELDS>``).
        self.insert_task = t.insert().values(
            workflow_id=_p("workflow"),
            **{key: _p("n_" + key) for key in TASK_FIELDS},
            status=TaskStatus.PENDING.value,
            attempts=0,
            # A driver-compiled INSERT sends no Python-side defaults.
            crashes=0,
        )
        self.workflow_status = sa.select(w.c.status).where(w.c.workflow_id == _p("workflow"))
        #: The statements of a task's finish and of a continuation's expansion, compiled
        #: for the driver: they run on the driver's connection inside a store
        #: transaction (``SqlCore._run_in``).
        self.forms = TaskForms(
            *_compiled(
                dialect,
                self.insert_checkpoint,
                self.finish_task,
                self.complete_tasks,
                self.finish_workflow,
                self.alert_outcome,
                self.save_log,
                self.reserve_ids,
                self.insert_task,
                self.workflow_status,
            )
        )
        self.pools = PoolStatements(tables, dialect)
        self.direct = DirectForms(self) if dialect == "postgresql" else None

    # Parts shared by the statements above and their one-statement forms.

    def alerts(self, run: Any) -> Any:
        """The outbox rows of an outcome: ``run`` is a selectable of the workflow rows that
        just ended (its columns named as the table's), each joined to the routes of its
        outcome's event (none for CANCELED)."""
        r, o = self.tables.notify_routes, self.tables.outbox
        event = sa.case(OUTCOME_EVENTS, value=run.c.status)
        rows = (
            sa.select(
                run.c.workflow_id,
                run.c.name,
                r.c.event,
                sa.literal("").label("subject"),
                sa.func.coalesce(run.c.started_at, run.c.created_at).label("occurrence"),
                r.c.notifier,
                r.c.target,
                run.c.status,
                run.c.error,
                *self._pending(run.c.ended_at),
            )
            .join_from(run, r, r.c.workflow_id == run.c.workflow_id)
            .where(r.c.event == event)
        )
        return self.insert(o).from_select(ALERT_COLUMNS, rows).on_conflict_do_nothing()

    @staticmethod
    def _pending(now: Any) -> list[Any]:
        """The delivery columns of a new outbox row (``ALERT_COLUMNS``' last five)."""
        return [
            sa.literal("pending").label("state"),
            sa.literal(0).label("attempts"),
            now.label("next_attempt_at"),
            now.label("created_at"),
            sa.null().label("delivered_at"),
        ]

    @staticmethod
    def _one_task(t: sa.Table) -> sa.Update:
        return t.update().where(t.c.workflow_id == _p("workflow"), t.c.task_id == _p("task"))

    @staticmethod
    def _task_finished(t: sa.Table) -> dict[sa.Column[Any], Any]:
        """A task's row at its finish: ``task_status`` SUCCESSFUL or CONTINUED, ``output`` the
        task whose checkpoint holds its value (None for a continuation)."""
        return {
            t.c.status: _p("task_status"),
            t.c.started_at: sa.func.coalesce(t.c.started_at, _p("started")),
            t.c.ended_at: _p("ended"),
            t.c.attempts: t.c.attempts + _p("delta"),
            t.c.output_preview: _p("preview"),
            t.c.output_task_id: _p("output"),
            t.c.error: None,
        }

    @staticmethod
    def _finished(t: sa.Table) -> Any:
        # Not IN: a compiled IN list is expanded per call, which a direct form cannot be.
        return sa.or_(*(t.c.status == status for status in FINISHED))

    @staticmethod
    def _completed(t: sa.Table) -> dict[sa.Column[Any], Any]:
        """The row of a task whose continuation just finished with this value."""
        return {
            t.c.status: TaskStatus.SUCCESSFUL.value,
            # A task that returned a continuation ended when its function did.
            t.c.ended_at: sa.func.coalesce(t.c.ended_at, _p("ended")),
            t.c.output_preview: _p("preview"),
            t.c.output_task_id: _p("output"),
        }

    @staticmethod
    def _workflow_succeeded(w: sa.Table) -> dict[sa.Column[Any], Any]:
        return {
            w.c.status: WorkflowStatus.SUCCESSFUL.value,
            w.c.output_preview: _p("preview"),
            w.c.error: None,
            w.c.ended_at: _p("ended"),
            w.c.owner: None,
            w.c.lease_expires_at: None,
        }


def _ended_columns(w: sa.Table) -> list[sa.Column[Any]]:
    """What an outcome's UPDATE returns for ``Statements.alerts``."""
    return [w.c[key] for key in ("workflow_id", "name", "status", "error", "started_at")] + [
        w.c.created_at,
        w.c.ended_at,
    ]


def _json_list(name: str, dialect: str) -> sa.Select[Any]:
    """The elements of a parameter holding a JSON array of strings, for ``IN``: one
    parameter however long the list, so the statement compiles once for the driver."""
    if dialect == "postgresql":
        return sa.select(sa.func.jsonb_array_elements_text(sa.cast(_p(name), postgresql.JSONB)))
    return sa.select(sa.column("value")).select_from(sa.func.json_each(_p(name)))


def _any(name: str) -> Any:
    """``= ANY(<array parameter>)``: PostgreSQL's list membership, one parameter."""
    return sa.any_(_p(name, type_=postgresql.ARRAY(sa.Text)))


def _json_rows(name: str, alias: str) -> Any:
    """A JSON array parameter as a table of its elements (column ``value``)."""
    return (
        sa.func.jsonb_array_elements(sa.cast(_p(name), postgresql.JSONB))
        .table_valued(sa.column("value", postgresql.JSONB))
        .alias(alias)
    )


def _field(rows: Any, index: int) -> Any:
    """Element ``index`` of a JSON row, as text."""
    return rows.c.value.op("->>")(sa.literal_column(str(index)))


class DirectForms:
    """PostgreSQL's one-statement forms of the hot path, compiled for psycopg.

    PostgreSQL runs each data-modifying part of a WITH exactly once, whether or not
    anything reads it, so one statement can hold a whole transaction's writes.
    """

    def __init__(self, s: Statements) -> None:
        w, t, o = s.tables.workflows, s.tables.tasks, s.tables.outbox
        checkpoint = s.insert_checkpoint.cte("checkpoint")
        first = sa.exists(sa.select(checkpoint.c.task_id))
        finished = s.finish_task.where(first)

        #: ``task_finished`` of a task that is not its graph's output: the checkpoint,
        #: then (only if it was the first for the task) the task's row.
        self.finish_task_only = DirectStatement.compile(finished.add_cte(checkpoint))
        #: ``task_finished`` of a graph's output: as above, plus the rows of the tasks
        #: whose continuations end in it (``completes``) and the workflow's outcome.
        #: Returns a row if it recorded the outcome.
        completed = (
            t.update()
            .where(t.c.workflow_id == _p("workflow"), t.c.task_id == _any("completes"), first)
            .values(s._completed(t))
        )
        #: The outcome goes into the outbox in the same statement (``alerted``): nothing
        #: but an index probe of the routes for a run that has none.
        succeeded = (
            w.update()
            .where(w.c.workflow_id == _p("workflow"), w.c.status == WorkflowStatus.RUNNING.value)
            .where(w.c.output_task_id == _any("outputs"), first)
            .values(s._workflow_succeeded(w))
            .returning(*_ended_columns(w))
            .cte("succeeded")
        )
        outcome = (
            completed.returning(t.c.task_id).cte("completed"),
            succeeded,
            s.alerts(succeeded).returning(o.c.notification_id).cte("alerted"),
        )
        task = (checkpoint, finished.returning(t.c.task_id).cte("finished"))
        self.finish_task = DirectStatement.compile(
            sa.select(sa.literal_column("1")).select_from(succeeded).add_cte(*task, *outcome)
        )
        #: A pooled task's finish gives its slot back (or hands it on) in the same
        #: statement: as above, returning one row (outcome recorded, anyone waiting in
        #: the pool's line, slot handed on).
        recorded = sa.exists(sa.select(succeeded.c.workflow_id)).label("outcome")
        waiting = s.pools.anyone_waiting.label("waiting")
        slot = s.pools.given_back()
        handed = sa.exists(sa.select(slot[0].c.task_id)).label("handed")
        self.finish_pooled_task_only = DirectStatement.compile(
            sa.select(sa.false().label("outcome"), waiting, handed).add_cte(*task, *slot)
        )
        self.finish_pooled_task = DirectStatement.compile(
            sa.select(recorded, waiting, handed).add_cte(*task, *outcome, *slot)
        )
        self.finished_tasks = DirectStatement.compile(
            sa.select(t.c.task_id)
            .where(t.c.workflow_id == _p("workflow"), t.c.task_id == _any("tasks"))
            .where(s._finished(t))
        )
        #: ``finish_many``: the outcomes travel as one JSON array (``outcomes``) of
        #: [workflow id, status, output preview, error, ended at].
        rows = _json_rows("outcomes", "o")
        ended = (
            w.update()
            .where(w.c.workflow_id == _field(rows, 0), w.c.owner == _p("by"))
            .values(
                {
                    w.c.status: _field(rows, 1),
                    w.c.output_preview: _field(rows, 2),
                    w.c.error: _field(rows, 3),
                    w.c.ended_at: sa.cast(_field(rows, 4), sa.Float),
                    w.c.owner: None,
                    w.c.lease_expires_at: None,
                }
            )
            .returning(*_ended_columns(w))
            .cte("ended")
        )
        #: ... and their events into the outbox.
        self.finish_outcomes = DirectStatement.compile(
            sa.select(sa.func.count())
            .select_from(ended)
            .add_cte(ended, s.alerts(ended).returning(o.c.notification_id).cte("alerted"))
        )
        #: ``create_workflow``: the workflow's row and, only if it is new, its tasks,
        #: which travel as one JSON array (``tasks``) of ``json_task_row``s. One JSON
        #: document, not an array per column: psycopg inspects every element of an array
        #: parameter to pick its type. Returns a row per task if it created the workflow.
        workflow = s.insert_workflow.cte("workflow")
        self.create_workflow = DirectStatement.compile(
            _insert_json_tasks(s, created=workflow).returning(sa.literal_column("1"))
        )
        #: ``task_continued``: the continuation's checkpoint, then, only if it was the
        #: first for the task, the task's row and the new tasks (``tasks``, as above).
        #: Returns the workflow's status, for a cancel that came meanwhile.
        added = _insert_json_tasks(s, condition=first)
        self.continue_task = DirectStatement.compile(
            s.workflow_status.add_cte(*task, added.returning(t.c.task_id).cte("added"))
        )
        #: ``ReserveIds`` for every base at once: ``bases`` is a JSON array of [base, its
        #: LIKE pattern of numbered ids, count]; returns (base, the counter's new end).
        names, b = s.tables.task_names, _json_rows("bases", "b")
        base, n = _field(b, 0), sa.cast(_field(b, 2), sa.Integer)
        used = _ids_used(s.tables, base, _field(b, 1))
        reserve = s.insert(names).from_select(
            ["workflow_id", "base", "next", "reserved"],
            sa.select(_p("workflow", type_=sa.String), base, used + n, n),
        )
        self.reserve_ids = DirectStatement.compile(
            reserve.on_conflict_do_update(
                index_elements=[names.c.workflow_id, names.c.base],
                set_={
                    names.c.next: names.c.next + reserve.excluded.reserved,
                    names.c.reserved: reserve.excluded.reserved,
                },
            ).returning(names.c.base, names.c.next)
        )


def _ids_used(tables: Tables, base: Any, numbered: Any) -> Any:
    """How many ids of ``base`` (itself, or numbered: LIKE ``numbered``) the workflow
    ``workflow`` has, for its counter's first reservation; 0 once the counter exists,
    whose reservations do not read it, so a deep recursion does not count its tasks at
    every level."""
    t, names = tables.tasks, tables.task_names
    counted = sa.exists().where(names.c.workflow_id == _p("workflow"), names.c.base == base)
    used = (
        sa.select(sa.func.count())
        .select_from(t)
        .where(t.c.workflow_id == _p("workflow"))
        .where(sa.or_(t.c.task_id == base, t.c.task_id.like(numbered, escape="\\")))
        .scalar_subquery()
    )
    return sa.case((counted, 0), else_=used)


def _insert_json_tasks(s: Statements, created: Any = None, condition: Any = None) -> Any:
    """An INSERT of the task rows in the JSON array parameter ``tasks`` (each a
    ``json_task_row``): into the workflow ``created`` (the CTE of a new workflow's row)
    inserts, or else into the one named by the parameter ``workflow``, where
    ``condition`` holds."""
    t, r = s.tables.tasks, _json_rows("tasks", "r")
    workflow = _p("workflow", type_=sa.String) if created is None else created.c.workflow_id
    fields = {
        t.c.workflow_id: workflow,
        **{t.c[key]: _field(r, i) for i, key in enumerate(TASK_FIELDS)},
        t.c.seq: sa.cast(_field(r, TASK_FIELDS.index("seq")), sa.BigInteger),
        t.c.status: sa.literal(TaskStatus.PENDING.value),
        t.c.attempts: sa.literal(0),
    }
    rows = sa.select(*fields.values())
    rows = rows.select_from(r) if created is None else rows.join_from(created, r, sa.true())
    if condition is not None:
        rows = rows.where(condition)
    # Columns left out take the database's defaults, not values bound here.
    return s.insert(t).from_select(list(fields), rows, include_defaults=False)


#: A task's fields in ``DirectForms.create_workflow``'s JSON rows, in order.
TASK_FIELDS = ("task_id", "seq", "name", "parent_task_id", "upstream", "user_metadata", "pool")


def json_task_row(task: NewTask, seq: int) -> list[Any]:
    """A new task as one row of ``DirectForms.create_workflow``'s ``tasks``."""
    row = {
        "task_id": task.task_id,
        "seq": seq,
        "name": task.name,
        "parent_task_id": task.parent_task_id,
        "upstream": dump_json(task.upstream),
        "user_metadata": dump_json(task.user_metadata),
        "pool": task.pool,
    }
    return [row[field] for field in TASK_FIELDS]


#: A pool slot's states (``gnomon_pool_slots.state``): held (a lease), or queued (in line).
HELD, QUEUED = "held", "queued"


class PoolStatements:
    """The pools' hot path: a pooled task taking a free slot when it starts, and giving
    it back when it ends (parameters ``s_*``). A pool's ``used`` counts its ``held``
    rows: these statements change both together, by exact steps."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self.tables = tables
        p, s, starts = tables.pools, tables.pool_slots, tables.pool_starts
        in_pool = s.c.pool == _p("s_pool")
        #: The task's own row.
        self.key = sa.and_(
            in_pool, s.c.workflow_id == _p("s_workflow"), s.c.task_id == _p("s_task")
        )
        live = s.c.lease_expires_at > _p("s_now")
        #: Whether a live waiter of at least the task's priority stands in line.
        ahead = (
            sa.exists()
            .where(in_pool, s.c.state == QUEUED, live, s.c.priority >= _p("s_priority"))
            .where(sa.not_(self.key))
        )
        #: A free slot, taken by a task with no row in the pool yet when nobody it must
        #: let go first waits: ``used`` goes up by one (PostgreSQL re-checks ``used <
        #: slots`` on the locked row, so two never take the last slot). Rate-limited
        #: pools take the long way (``PoolStore``).
        self.take = (
            p.update()
            .where(p.c.name == _p("s_pool"), p.c.used < p.c.slots, p.c.rate_limit.is_(None))
            .where(~sa.exists().where(self.key), ~ahead)
            .values(used=p.c.used + 1)
            .returning(p.c.name)
        )
        self.insert_held = s.insert().values(
            pool=_p("s_pool"),
            workflow_id=_p("s_workflow"),
            task_id=_p("s_task"),
            state=HELD,
            priority=_p("s_priority"),
            seq=_p("s_seq"),
            owner=_p("s_owner"),
            lease_expires_at=_p("s_lease"),
        )
        limits = sa.select(p.c.slots, p.c.rate_limit, p.c.rate_period).where(
            p.c.name == _p("s_pool")
        )
        #: The pool's limits, its row locked until the transaction ends (on PostgreSQL;
        #: SQLite's write transactions exclude each other already).
        self.limits = limits.with_for_update() if dialect == "postgresql" else limits
        #: The task's own row's state (None, held or queued), and whether someone it must
        #: let go first waits.
        self.outlook = sa.select(
            sa.select(s.c.state).where(self.key).scalar_subquery().label("mine"),
            ahead.label("ahead"),
        )
        #: Every holder of the pool, to find those whose process is gone.
        self.holders = sa.select(
            s.c.workflow_id, s.c.task_id, s.c.owner, s.c.lease_expires_at
        ).where(in_pool, s.c.state == HELD)
        self.drop_holder = s.delete().where(self.key, s.c.owner == _p("s_owner"))
        self.hold = (
            s.update()
            .where(self.key)
            .values(state=HELD, owner=_p("s_owner"), lease_expires_at=_p("s_lease"))
        )
        #: ``used`` counted again from the rows (after the long way changed them).
        self.recount = (
            p.update()
            .where(p.c.name == _p("s_pool"))
            .values(
                used=sa.select(sa.func.count())
                .select_from(s)
                .where(in_pool, s.c.state == HELD)
                .scalar_subquery()
            )
        )
        #: The task's slot (or place in line) goes back; then, whether anyone waits.
        self.release = s.delete().where(self.key).returning(s.c.state)
        self.anyone_waiting = sa.exists().where(in_pool, s.c.state == QUEUED, live)
        self.waiting = sa.select(self.anyone_waiting.label("waiting"))
        #: ``used`` down by one for a held slot's release, returning whether anyone waits.
        self.uncount = (
            p.update()
            .where(p.c.name == _p("s_pool"), p.c.used > 0)
            .values(used=p.c.used - 1)
            .returning(self.anyone_waiting.label("waiting"))
        )
        #: The task's slot, held, passes to the task ``s_next`` (the next task of its
        #: chain, in the same pool) if nobody waits in the pool's line: a take and a
        #: release spared.
        self.hand_on = (
            s.update()
            .where(self.key, s.c.state == HELD, ~self.anyone_waiting)
            .values(task_id=_p("s_next", type_=sa.String))
            .returning(s.c.task_id)
        )
        #: Rate-limited pools: the starts in the window, as a sliding log.
        self.prune_starts = starts.delete().where(
            starts.c.pool == _p("s_pool"), starts.c.started_at <= _p("s_window")
        )
        self.recent_starts = (
            sa.select(starts.c.started_at)
            .where(starts.c.pool == _p("s_pool"))
            .order_by(starts.c.started_at)
        )
        self.insert_start = starts.insert().values(
            pool=_p("s_pool"),
            workflow_id=_p("s_workflow"),
            task_id=_p("s_task"),
            started_at=_p("s_now"),
        )
        #: The statements of a take and a release, compiled for the driver: they run on
        #: the driver's connection inside a store transaction (``SqlCore._run_in``).
        self.forms = SlotForms(
            *_compiled(
                dialect,
                self.take,
                self.insert_held,
                self.release,
                self.uncount,
                self.waiting,
                self.hand_on,
            )
        )
        #: PostgreSQL's one-statement forms of taking and giving back a slot.
        self.direct_take: DirectStatement | None = None
        self.direct_release: DirectStatement | None = None
        if dialect == "postgresql":
            # A slot is a lease, not a result: a take's commit does not wait for the
            # disk. One lost with the database server (a crash within a fraction of a
            # second) leaves its task running outside the pool's count until it ends.
            took = self.take.where(_lazy_commit()).cte("took")
            self.direct_take = DirectStatement.compile(
                s.insert()
                .from_select(
                    [s.c[name] for name in HELD_ROW],
                    sa.select(*_held_row()).select_from(took),
                )
                .returning(s.c.task_id)
            )
            self.direct_release = DirectStatement.compile(self.waiting.add_cte(*self.given_back()))

    def given_back(self) -> tuple[Any, Any, Any]:
        """A slot's release as the CTEs of one PostgreSQL statement: handed on to the
        task ``s_next`` when one is named and nobody waits in the pool's line (``handed``
        has its row); else its row deleted, then ``used`` down by one if it was held.
        The two conditions exclude each other, read in the statement's one snapshot.
        Any statement that adds them gives the slot back; ``waiting`` read in it still
        sees who else stands in line."""
        p = self.tables.pools
        hands_on = sa.and_(_p("s_next", type_=sa.String).is_not(None), ~self.anyone_waiting)
        handed = self.hand_on.where(_p("s_next", type_=sa.String).is_not(None)).cte("handed")
        gone = self.release.where(~hands_on).cte("gone")
        freed = (
            p.update()
            .where(p.c.name == _p("s_pool"), p.c.used > 0)
            .where(sa.exists().where(gone.c.state == HELD))
            .values(used=p.c.used - 1)
        )
        return handed, gone, freed.cte("freed")


@dataclass(frozen=True)
class SlotForms:
    """``PoolStatements``' take and release, compiled for the driver."""

    take: DirectStatement
    insert_held: DirectStatement
    release: DirectStatement
    uncount: DirectStatement
    waiting: DirectStatement
    hand_on: DirectStatement


def _lazy_commit() -> Any:
    """A condition that is true, and makes the transaction that evaluates it commit
    without waiting for its WAL to reach the disk (PostgreSQL's ``SET LOCAL
    synchronous_commit = off``, inside one statement)."""
    return sa.func.set_config("synchronous_commit", "off", sa.true()) == "off"


#: The columns of a held row, and the parameters ``PoolStatements.take`` fills them with.
HELD_ROW = (
    "pool",
    "workflow_id",
    "task_id",
    "state",
    "priority",
    "seq",
    "owner",
    "lease_expires_at",
)


def _held_row() -> list[Any]:
    return [
        _p("s_pool", type_=sa.String),
        _p("s_workflow", type_=sa.String),
        _p("s_task", type_=sa.String),
        sa.literal(HELD, sa.String),
        _p("s_priority", type_=sa.Integer),
        _p("s_seq", type_=sa.BigInteger),
        _p("s_owner", type_=sa.String),
        _p("s_lease", type_=sa.Float),
    ]


#: The statements over the real schema, built and compiled at import.
STATEMENTS = {
    dialect: Statements(Tables.of(schema.metadata), dialect) for dialect in ("sqlite", "postgresql")
}
