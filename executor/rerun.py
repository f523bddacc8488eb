"""Running a workflow again after an operator fixed something: which tasks run again.

- A **retry with current code** rebuilds the run's graph from the registered workflow as
  it is loaded now (``Rebuild``, which the scheduler provides) and matches its tasks to
  the recorded ones by task id. Task ids are deterministic for the same function, params
  and graph shape (``executor.dag``), so a task keeps its checkpoint when its id, its
  upstream task ids and its arguments are unchanged, and its upstream tasks keep theirs.
  A finished task whose upstream tasks changed contradicts the new graph: the retry is
  refused, naming it.
- A **clear** runs chosen tasks again, with everything downstream of them (the tasks of
  a continuation are downstream of the task that returned it).
- A **fork** starts a new run from the finished tasks of another.

``plan`` decides; ``Rerun`` (``executor.store.records``) is what the store applies, in one
transaction, before the run resumes: a crash in between leaves a RESUMABLE run, never a
half-cleared one read as SUCCESSFUL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray import cloudpickle

from executor.dag import Graph, TaskSpec
from executor.errors import TaskNotFoundError, WorkflowNotRetryableError
from executor.graph_runner import new_task_rows
from executor.status import TaskStatus
from executor.store import NewTask, TaskRecord, WorkflowRecord

#: How a run's graph is built again from current code: (its record, params over the
#: recorded ones) -> (the DAG, the code's version, the run's metadata to record). The
#: scheduler provides it for registered workflows; it raises
#: ``WorkflowNotRetryableError`` for a run it cannot rebuild.
Rebuild = Callable[[WorkflowRecord, dict[str, Any]], tuple[Any, str | None, dict[str, Any]]]

_rebuilders: list[Rebuild] = []


def set_rebuilder(rebuild: Rebuild) -> None:
    """Make ``rebuild`` the default way to rebuild registered runs (the scheduler's)."""
    _rebuilders[:] = [rebuild]


def default_rebuilder(workflow_id: str) -> Rebuild:
    if not _rebuilders:
        raise WorkflowNotRetryableError(
            workflow_id, "no registered workflows are loaded in this process"
        )
    return _rebuilders[0]


@dataclass
class Plan:
    """The tasks of a rerun, by what happens to them (see ``executor.store.Rerun``)."""

    reset: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    reopen: set[str] = field(default_factory=set)
    new_tasks: list[NewTask] = field(default_factory=list)


def plan(
    rows: dict[str, TaskRecord],
    recorded: Graph | None,
    current: Graph | None = None,
    cleared: Iterable[str] = (),
    downstream: bool = True,
) -> Plan:
    """What runs again: the ``cleared`` tasks (and, with ``downstream``, everything that
    depends on them), and with a ``current`` graph every task it does not match. Raises
    ``TaskNotFoundError`` for an unknown cleared task and ``WorkflowNotRetryableError``
    when the current graph contradicts a checkpoint."""
    result = Plan()
    consumers = _consumers(rows)
    for task_id in cleared:
        if task_id not in rows:
            workflow_id = next(iter(rows.values())).workflow_id if rows else ""
            raise TaskNotFoundError(workflow_id, task_id)
        _reset(task_id, rows, consumers, downstream, result)
    if current is not None:
        _match(rows, recorded, current, consumers, result)
    # A task whose value came from a task that runs again: its continuation's output
    # runs again, so it is CONTINUED again (and what depends on it runs again too).
    changed = True
    while changed:
        changed = False
        gone = result.reset | result.drop
        for row in rows.values():
            if (
                row.task_id not in gone
                and row.task_id not in result.reopen
                and row.output_task_id is not None
                and row.output_task_id != row.task_id
                and row.output_task_id in gone
            ):
                result.reopen.add(row.task_id)
                if downstream:
                    for consumer in consumers.get(row.task_id, ()):
                        _reset(consumer, rows, consumers, downstream, result)
                changed = True
    return result


def _consumers(rows: dict[str, TaskRecord]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in rows.values():
        for upstream in row.upstream:
            found.setdefault(upstream, []).append(row.task_id)
    return found


def _reset(
    task_id: str,
    rows: dict[str, TaskRecord],
    consumers: dict[str, list[str]],
    downstream: bool,
    result: Plan,
) -> None:
    """Run ``task_id`` again: its continuation's tasks go, and with ``downstream`` the
    tasks that take its output run again too."""
    stack = [task_id]
    while stack:
        current = stack.pop()
        if current in result.reset:
            continue
        result.reset.add(current)
        result.reopen.discard(current)
        _drop_continuation(current, rows, result)
        if downstream:
            stack.extend(consumers.get(current, ()))


def _drop_continuation(task_id: str, rows: dict[str, TaskRecord], result: Plan) -> None:
    """The tasks a continuation of ``task_id`` added, and theirs, recursively."""
    children: dict[str, list[str]] = {}
    for row in rows.values():
        if row.parent_task_id is not None:
            children.setdefault(row.parent_task_id, []).append(row.task_id)
    stack = list(children.get(task_id, ()))
    while stack:
        child = stack.pop()
        if child in result.drop:
            continue
        result.drop.add(child)
        result.reset.discard(child)
        stack.extend(children.get(child, ()))


def _match(
    rows: dict[str, TaskRecord],
    recorded: Graph | None,
    current: Graph,
    consumers: dict[str, list[str]],
    result: Plan,
) -> None:
    top = {task_id: row for task_id, row in rows.items() if row.parent_task_id is None}
    for task_id, spec in current.tasks.items():  # upstream first
        row = rows.get(task_id)
        if row is None:
            continue
        if row.parent_task_id is not None:
            raise WorkflowNotRetryableError(
                row.workflow_id,
                f"task {task_id!r} of the current code was a continuation's task in this run",
            )
        if finished(row) and task_id not in result.reset:
            if list(spec.upstream) != list(row.upstream):
                raise WorkflowNotRetryableError(
                    row.workflow_id,
                    f"task {task_id!r} finished with upstream {row.upstream}, and the current "
                    f"code gives it {list(spec.upstream)}",
                )
            old = recorded.tasks.get(task_id) if recorded is not None else None
            if (
                old is None
                or _fingerprint(old) != _fingerprint(spec)
                or any(up in result.reset for up in spec.upstream)
            ):
                _reset(task_id, rows, consumers, True, result)
        elif row.status != TaskStatus.PENDING:
            # It ran and did not finish (or its continuation did not): with new code it
            # runs again from the start, its continuation with it.
            _reset(task_id, rows, consumers, True, result)
    for task_id in top:
        if task_id not in current.tasks:
            result.drop.add(task_id)
            result.reset.discard(task_id)
            _drop_continuation(task_id, rows, result)
    result.new_tasks = [row for row in new_task_rows(current) if row.task_id not in rows]


def finished(row: TaskRecord) -> bool:
    """Whether a task's value is stored (its own, or its continuation's)."""
    return row.status == TaskStatus.SUCCESSFUL and row.output_task_id is not None


def _fingerprint(spec: TaskSpec) -> str:
    """What a task is given, whatever code runs it: its kind and its arguments (with its
    upstream tasks' places)."""
    data = cloudpickle.dumps((spec.kind, spec.args, spec.kwargs))
    return hashlib.sha1(data).hexdigest()


def fork_id(workflow_id: str, taken: Callable[[str], bool]) -> str:
    """``<id>~fork<n>``, the first such id not taken."""
    n = 1
    while taken(f"{workflow_id}~fork{n}"):
        n += 1
    return f"{workflow_id}~fork{n}"
