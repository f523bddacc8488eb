"""The public API: Ray Workflows' ``workflow`` module, name for name, on current Ray.

from executor import workflow   # was: from ray import workflow
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import ray
from ray.dag import DAGNode

from executor.actors import session_cache
from executor.checkpoint import copy_checkpoint, dumps, loads
from executor.cluster import connect
from executor.config import StoreConfig, handles
from executor.dag import Graph, build_graph
from executor.errors import (
    InvalidInputError,
    InvalidTypeError,
    PoolNotFoundError,
    TaskNotFoundError,
    TaskTimeoutError,
    WorkflowCancellationError,
    WorkflowError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowNotResumableError,
    WorkflowNotRetryableError,
    WorkflowStillActiveError,
    WorkflowTimeoutError,
)
from executor.events import (
    EventListener,
    HTTPListener,
    check_event_key,
    encode_payload,
    sleep,
    wait_for_event,
)
from executor.graph_runner import new_task_rows
from executor.manager import manager_for
from executor.metadata import task_metadata, workflow_metadata
from executor.options import check_timeout, options, validate_user_metadata
from executor.rerun import Plan, Rebuild, default_rebuilder, finished, fork_id, plan
from executor.retry import Retry
from executor.stages import Continuation, current_task
from executor.status import ACTIVE, RESUMABLE_FROM, WorkflowStatus
from executor.store import Checkpoint, Rerun, Store, TaskRecord, WorkflowRecord
from executor.store.migrate import upgrade
from executor.store.records import RunAlerts

__all__ = [
    "EventListener",
    "HTTPListener",
    "PoolNotFoundError",
    "Retry",
    "TaskTimeoutError",
    "WorkflowCancellationError",
    "WorkflowError",
    "WorkflowExecutionError",
    "WorkflowNotFoundError",
    "WorkflowNotResumableError",
    "WorkflowNotRetryableError",
    "WorkflowStatus",
    "WorkflowStillActiveError",
    "WorkflowTimeoutError",
    "cancel",
    "clear",
    "continuation",
    "delete",
    "fork",
    "get_metadata",
    "get_output",
    "get_output_async",
    "get_status",
    "init",
    "list_all",
    "options",
    "preview",
    "resume",
    "resume_all",
    "resume_async",
    "retry",
    "run",
    "run_async",
    "send_event",
    "sleep",
    "wait_for_event",
]

# The statuses as module constants, as Ray Workflows defined them (``workflow.RUNNING``).
RUNNING = WorkflowStatus.RUNNING
PENDING = WorkflowStatus.PENDING
SUCCESSFUL = WorkflowStatus.SUCCESSFUL
FAILED = WorkflowStatus.FAILED
CANCELED = WorkflowStatus.CANCELED
RESUMABLE = WorkflowStatus.RESUMABLE

_config: StoreConfig | None = None
#: The version of this process's code, recorded with the workflows it submits.
_code_version: str | None = os.environ.get("GNOMON_CODE_VERSION") or None


def init(
    database_url: str | None = None,
    *,
    storage: str | None = None,
    max_running_workflows: int | None = None,
    max_pending_workflows: int | None = None,
    code_version: str | None = None,
) -> StoreConfig:
    """Choose the database and blob store, migrate the schema, and make sure Ray is up.

    ``code_version`` (default ``$GNOMON_CODE_VERSION``) is recorded with every workflow
    this process submits: which code built its graph.

    Uses the Ray already initialised in this process, else joins ``$RAY_ADDRESS``, else
    starts a local Ray. Defaults: ``$GNOMON_DATABASE_URL`` or SQLite at
    ``~/.gnomon/gnomon.db``; ``$GNOMON_STORAGE`` or ``~/.gnomon/blobs``.

    ``max_running_workflows`` and ``max_pending_workflows`` are Ray Workflows' queue: at
    most that many workflows run at once (-1: no limit), the others wait PENDING in
    submission order, and past ``max_pending_workflows`` waiting (-1: no limit) a
    submission raises ``queue.Full``. They are kept in the database, so they hold for
    every process on it; a later ``init`` may repeat them or pass None, but not change
    them (``ValueError``).
    """
    global _config, _code_version
    if database_url is not None and not isinstance(database_url, str):
        raise TypeError(f"database_url must be a string, got {type(database_url).__name__}")
    _check_limit("max_running_workflows", max_running_workflows, lowest=1)
    _check_limit("max_pending_workflows", max_pending_workflows, lowest=0)
    config = StoreConfig.resolve(database_url, storage)
    if not ray.is_initialized():
        connect(include_dashboard=False, log_to_driver=True)  # $RAY_ADDRESS, else local
    store = handles(config).store
    upgrade(store)
    if max_running_workflows is not None or max_pending_workflows is not None:
        store.set_queue_limits(max_running_workflows, max_pending_workflows)
    if code_version is not None:
        _code_version = str(code_version)
    _config = config
    return config


def _check_limit(name: str, value: Any, lowest: int) -> None:
    """Ray Workflows' checks and messages for a queue limit."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"'{name}' must be None or an integer.")
    if value < -1 or (lowest == 1 and value == 0):
        what = "a positive integer" if lowest == 1 else "a non-negative integer"
        raise InvalidInputError(f"'{name}' must be {what} or use -1 as infinity.")


def _ensure() -> tuple[StoreConfig, Store]:
    if _config is None:
        init()
    assert _config is not None
    return _config, handles(_config).store


def _check_id(workflow_id: Any) -> str:
    if not isinstance(workflow_id, str):
        raise InvalidTypeError(
            f"workflow_id has to be a string type, got {type(workflow_id).__name__}"
        )
    if not workflow_id:
        raise InvalidInputError("workflow_id must not be empty")
    if len(workflow_id) > 255:
        raise InvalidInputError("workflow_id is longer than 255 characters")
    return workflow_id


# ------------------------------------------------------------------- running


def run(
    dag: DAGNode,
    *args: Any,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    **kwargs: Any,
) -> Any:
    """Run a workflow to completion and return its output."""
    return _get(
        run_async(
            dag, *args, workflow_id=workflow_id, metadata=metadata, timeout_s=timeout_s, **kwargs
        )
    )


def run_async(
    dag: DAGNode,
    *args: Any,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    **kwargs: Any,
) -> ray.ObjectRef:
    """Start a workflow; ``ray.get`` the returned ref for its output.

    Running an id that already exists returns its stored output, or resumes it.
    ``timeout_s`` limits the run: past it (counted from its start, or its latest
    resume) its tasks are stopped and it is FAILED (``WorkflowTimeoutError``). It takes
    the name from the DAG's inputs: an input called ``timeout_s`` cannot be passed.
    """
    ref = submit(dag, args, kwargs, workflow_id=workflow_id, metadata=metadata, timeout_s=timeout_s)
    assert ref is not None
    return ref


def submit(
    dag: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
    trigger: str = "manual",
    if_exists: str = "resume",
    max_active: int | None = None,
    code_version: str | None = None,
    alerts: RunAlerts | None = None,
    timeout_s: float | None = None,
    task_defaults: dict[str, Any] | None = None,
) -> ray.ObjectRef | None:
    """``run_async`` with the scheduler's extras: a workflow name and a trigger label.

    ``if_exists="ignore"`` makes submitting an existing id a no-op that returns None
    (a schedule's tick firing twice); the default returns its output or resumes it.
    ``max_active`` raises ``NoFreeSlotError`` rather than exceed that many active runs
    of ``name`` (a schedule's ``max_active_runs``). ``code_version`` overrides this
    process's (a registered workflow's is its dags file's). ``alerts``: a registered
    run's notification routes and deadline, created with it. ``timeout_s`` is the
    run's (see ``run_async``); ``task_defaults`` are workflow options every task takes
    unless it gives its own (a registered workflow's ``pool`` and ``priority``).
    Raises ``PoolNotFoundError`` for a pool nobody created.
    """
    config, store = _ensure()
    if timeout_s is not None:
        timeout_s = check_timeout("timeout_s", timeout_s)
    defaults = tuple(sorted((task_defaults or {}).items()))
    graph = build_graph(dag, args, kwargs or {}, defaults=defaults)
    pools = sorted({spec.options.pool for spec in graph.tasks.values() if spec.options.pool})
    missing = sorted(store.missing_pools(pools)) if pools else []
    if missing:
        raise PoolNotFoundError(missing[0])
    metadata = validate_user_metadata(metadata)
    if workflow_id is None:
        workflow_id = f"{graph.tasks[graph.output].name.rsplit('.', 1)[-1]}.{uuid.uuid4().hex[:12]}"
    _check_id(workflow_id)
    data = dumps(graph)
    blob = None
    if len(data) > (1 << 20):
        blob = handles(config).blobs.put(workflow_id, "graph", data)
    manager = manager_for(config)
    owner = _manager_owner(config)
    created = store.create_workflow(
        workflow_id,
        name or graph.tasks[graph.output].name.rsplit(".", 1)[-1],
        None if blob else data,
        blob,
        graph.output,
        new_task_rows(graph),
        metadata,
        trigger=trigger,
        owner=owner,
        max_active=max_active,
        queue=store.queue_limits(),
        code_version=code_version or _code_version,
        alerts=alerts,
        timeout_s=timeout_s,
    )
    if created:
        return manager.run.remote(workflow_id, None if blob else data, True, owner, timeout_s)
    if if_exists == "ignore":
        return None
    return _existing(workflow_id)


_owners: dict[StoreConfig, str] = session_cache()


def _manager_owner(config: StoreConfig) -> str:
    """The manager's owner id, asked once per process: workflows are created already
    leased to it. A restarted manager has a new id and simply takes the lease again."""
    owner = _owners.get(config)
    if owner is None:
        owner = ray.get(manager_for(config).owner_id.remote())
        _owners[config] = owner
    return owner


def _existing(workflow_id: str) -> ray.ObjectRef:
    _, store = _ensure()
    status = store.get_workflow(workflow_id).status
    if status == WorkflowStatus.SUCCESSFUL:
        return get_output_async(workflow_id)
    if status in ACTIVE:
        raise WorkflowStillActiveError(workflow_id, "run")
    return resume_async(workflow_id)


def _get(ref: ray.ObjectRef) -> Any:
    """``ray.get`` that raises Gnomon's own errors, not Ray's wrappers around them."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, WorkflowError):
            raise cause from cause.__cause__
        raise


# ------------------------------------------------------------------ resuming


def resume(workflow_id: str) -> Any:
    return _get(resume_async(workflow_id))


def resume_async(workflow_id: str) -> ray.ObjectRef:
    """Resume a FAILED, RESUMABLE or CANCELED workflow; finished tasks do not run again."""
    config, store = _ensure()
    try:
        record = store.get_workflow(_check_id(workflow_id))
    except WorkflowNotFoundError:
        raise WorkflowNotResumableError(workflow_id, "no such workflow") from None
    if record.status == WorkflowStatus.SUCCESSFUL:
        return get_output_async(workflow_id)
    suspended = record.status == WorkflowStatus.PENDING and record.wake_at is not None
    if record.status not in RESUMABLE_FROM and not suspended:
        raise WorkflowStillActiveError(workflow_id, "resume")
    manager = manager_for(config)
    # Here, not in the manager's call: a full queue or a live owner is the caller's error.
    owner = _get(manager.enter.remote(workflow_id))
    return manager.run.remote(workflow_id, None, False, owner)


def resume_all(include_failed: bool = False) -> list[tuple[str, ray.ObjectRef]]:
    """Resume every RESUMABLE workflow (and FAILED ones, if asked)."""
    _, store = _ensure()
    wanted = [WorkflowStatus.RESUMABLE]
    if include_failed:
        wanted.append(WorkflowStatus.FAILED)
    # Oldest first, and those that were running before those that waited in the queue,
    # as Ray Workflows did: they take the running slots again.
    records = sorted(store.list_workflows(statuses=wanted), key=lambda r: (r.queued, r.created_at))
    resumed = []
    for record in records:
        try:
            resumed.append((record.workflow_id, resume_async(record.workflow_id)))
        except WorkflowError:
            continue  # another process took it between the listing and now
    return resumed


# ------------------------------------------------------------- running again

#: What ``code=`` takes: the code loaded now, or the code recorded with the run.
CODES = ("current", "recorded")


def retry(
    workflow_id: str,
    *,
    code: str = "current",
    params: dict[str, Any] | None = None,
    rebuild: Rebuild | None = None,
) -> ray.ObjectRef:
    """Run an ended workflow again on its id; nothing that finished runs again.

    ``code="current"`` (registered workflows) rebuilds its graph from the registered
    workflow as loaded now, with the recorded logical date and the recorded params
    updated by ``params``, and reuses the checkpoint of every task whose id, upstream
    tasks and arguments are unchanged (``executor.rerun``). ``code="recorded"`` is a
    resume. Returns a ref to the output. Refused (``WorkflowNotRetryableError``) when
    the run cannot be rebuilt or its current code contradicts a checkpoint, and
    (``WorkflowStillActiveError``) while it runs.
    """
    config, store = _ensure()
    record = _ended(store, workflow_id, "retry")
    if _check_code(code, params) == "recorded":
        return resume_async(workflow_id)
    return _rerun(config, store, record, (), True, params or {}, rebuild)


def clear(
    workflow_id: str,
    task_ids: list[str] | tuple[str, ...],
    *,
    downstream: bool = True,
    code: str = "recorded",
    params: dict[str, Any] | None = None,
    rebuild: Rebuild | None = None,
) -> ray.ObjectRef:
    """Run these tasks of an ended workflow again, with (``downstream``) every task that
    depends on them, then resume it with the code chosen (see ``retry``); their earlier
    attempts stay as history. Returns a ref to the output."""
    config, store = _ensure()
    record = _ended(store, workflow_id, "clear")
    if isinstance(task_ids, str) or not isinstance(task_ids, (list, tuple)) or not task_ids:
        raise InvalidInputError(f"task_ids must be a non-empty list of task ids, got {task_ids!r}")
    mode = _check_code(code, params)
    return _rerun(config, store, record, tuple(task_ids), downstream, params or {}, rebuild, mode)


def fork(
    workflow_id: str,
    *,
    from_task: str | None = None,
    params: dict[str, Any] | None = None,
    new_id: str | None = None,
    code: str | None = None,
    rebuild: Rebuild | None = None,
) -> str:
    """Start a new run from this one (which may still be running): it takes the
    checkpoint of every finished task but ``from_task`` and its downstream, and runs the
    rest. ``code`` defaults to "current" for a registered workflow, else "recorded";
    ``params`` need "current". Returns the new run's id (default ``<id>~fork<n>``)."""
    config, store = _ensure()
    record = store.get_workflow(_check_id(workflow_id))
    rows = {row.task_id: row for row in store.load_tasks(workflow_id)}
    if from_task is not None and from_task not in rows:
        raise TaskNotFoundError(workflow_id, from_task)
    recorded = _recorded_graph(config, store, workflow_id)
    mode = code or ("current" if rebuild or _registered(record) else "recorded")
    _check_code(mode, params)
    metadata, version, graph = record.user_metadata, record.code_version, recorded
    if mode == "current":
        dag, version, metadata = (rebuild or default_rebuilder(workflow_id))(record, params or {})
        graph = build_graph(dag)
    if graph is None:
        raise WorkflowNotRetryableError(workflow_id, "its graph is not stored")
    cleared = [from_task] if from_task is not None else []
    planned = plan(rows, recorded, graph if mode == "current" else None, cleared)
    gone = planned.reset | planned.drop | planned.reopen
    copied = [
        row
        for task_id, row in rows.items()
        if task_id in graph.tasks and task_id not in gone and finished(row)
    ]
    blobs = handles(config).blobs
    new_id = _check_id(new_id) if new_id else fork_id(workflow_id, lambda i: _exists(store, i))
    checkpoints: dict[str, Checkpoint] = {}
    for row in copied:
        for holder in {row.task_id, row.output_task_id or row.task_id}:
            found = store.load_checkpoint(workflow_id, holder)
            if found is not None and found.kind == "value":
                checkpoints[holder] = copy_checkpoint(found, blobs, new_id, holder)
    data = dumps(graph)
    blob = blobs.put(new_id, "graph", data) if len(data) > (1 << 20) else None
    owner = _manager_owner(config)
    created = store.fork_workflow(
        workflow_id,
        new_id,
        record.name,
        None if blob else data,
        blob,
        graph.output,
        new_task_rows(graph),
        copied,
        checkpoints,
        metadata,
        owner,
        code_version=version,
    )
    if not created:
        raise InvalidInputError(f"Workflow {new_id!r} exists already; choose another new_id")
    manager_for(config).run.remote(new_id, None, False, owner)
    return new_id


def _check_code(code: str, params: dict[str, Any] | None) -> str:
    if code not in CODES:
        raise InvalidInputError(f"code must be one of {', '.join(CODES)}, got {code!r}")
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError(f"params must be a JSON object, got {type(params).__name__}")
    if params and code != "current":
        raise InvalidInputError("params need code='current': the recorded graph has its own")
    return code


def _ended(store: Store, workflow_id: str, operation: str) -> WorkflowRecord:
    record = store.get_workflow(_check_id(workflow_id))
    if record.status in ACTIVE:
        raise WorkflowStillActiveError(workflow_id, operation)
    return record


def _registered(record: WorkflowRecord) -> bool:
    """Whether the run was started from a registered workflow (the scheduler records
    the schedule's name in its metadata)."""
    return "schedule" in record.user_metadata


def _exists(store: Store, workflow_id: str) -> bool:
    try:
        store.get_workflow(workflow_id)
    except WorkflowNotFoundError:
        return False
    return True


def _recorded_graph(config: StoreConfig, store: Store, workflow_id: str) -> Graph | None:
    data, blob = store.load_graph(workflow_id)
    if blob is not None:
        data = handles(config).blobs.get(blob)
    if data is None:
        return None
    graph: Graph = loads(data)
    return graph


def _rerun(
    config: StoreConfig,
    store: Store,
    record: WorkflowRecord,
    cleared: tuple[str, ...],
    downstream: bool,
    params: dict[str, Any],
    rebuild: Rebuild | None,
    code: str = "current",
) -> ray.ObjectRef:
    workflow_id = record.workflow_id
    _, planned, current, change = _plan_rerun(
        config, store, record, cleared, downstream, params, rebuild, code
    )
    if current is not None:
        data = dumps(current)
        blob = None
        if len(data) > (1 << 20):
            blob = handles(config).blobs.put(workflow_id, "graph", data)
        change.update(graph=None if blob else data, graph_blob=blob, output_task_id=current.output)
    store.rerun(
        workflow_id,
        Rerun(
            reset=tuple(sorted(planned.reset)),
            drop=tuple(sorted(planned.drop)),
            reopen=tuple(sorted(planned.reopen)),
            new_tasks=tuple(planned.new_tasks),
            **change,
        ),
    )
    # RESUMABLE now: resumed from here, or by recovery if this process dies first.
    manager = manager_for(config)
    try:
        owner = _get(manager.enter.remote(workflow_id))
    except WorkflowNotResumableError:  # recovery took it first: it runs there
        return get_output_async(workflow_id)
    ref: ray.ObjectRef = manager.run.remote(workflow_id, None, False, owner)
    return ref


def _plan_rerun(
    config: StoreConfig,
    store: Store,
    record: WorkflowRecord,
    cleared: tuple[str, ...],
    downstream: bool,
    params: dict[str, Any],
    rebuild: Rebuild | None,
    code: str,
) -> tuple[dict[str, TaskRecord], Plan, Graph | None, dict[str, Any]]:
    """(the recorded tasks, the plan, the current graph (None with recorded code), and
    the workflow's columns that change)."""
    workflow_id = record.workflow_id
    rows = {row.task_id: row for row in store.load_tasks(workflow_id)}
    recorded = _recorded_graph(config, store, workflow_id)
    change: dict[str, Any] = {}
    current = None
    if code == "current":
        dag, version, metadata = (rebuild or default_rebuilder(workflow_id))(record, params)
        current = build_graph(dag)
        change = {"code_version": version, "user_metadata": metadata}
    elif recorded is None:
        raise WorkflowNotRetryableError(workflow_id, "its graph is not stored")
    return rows, plan(rows, recorded, current, cleared, downstream), current, change


def preview(
    workflow_id: str,
    *,
    tasks: list[str] | tuple[str, ...] = (),
    downstream: bool = True,
    code: str | None = None,
    params: dict[str, Any] | None = None,
    rebuild: Rebuild | None = None,
) -> list[str]:
    """The tasks a ``retry`` (no ``tasks``) or a ``clear`` of ``tasks`` would run, in
    graph order, without changing anything: what the dashboard shows before an operator
    confirms. Raises what the rerun would (a refusal names its reason). ``code``
    defaults to "current" for a retry and "recorded" for a clear."""
    config, store = _ensure()
    record = store.get_workflow(_check_id(workflow_id))
    mode = _check_code(code or ("recorded" if tasks else "current"), params)
    rows, planned, current, _ = _plan_rerun(
        config, store, record, tuple(tasks), downstream, params or {}, rebuild, mode
    )
    graph = current or _recorded_graph(config, store, workflow_id)
    order = list(graph.tasks) if graph is not None else list(rows)
    again = planned.reset | planned.reopen
    return [
        task_id
        for task_id in order
        if task_id not in rows or task_id in again or not finished(rows[task_id])
    ]


# ------------------------------------------------------------------- reading


def get_output(workflow_id: str, *, task_id: str | None = None) -> Any:
    return _get(get_output_async(workflow_id, task_id=task_id))


def get_output_async(workflow_id: str, *, task_id: str | None = None) -> ray.ObjectRef:
    """A ref to the workflow's output (or one task's), waiting while it may still come.

    As in Ray Workflows, a task that has not run yet is waited for, and an output that
    will not come raises ``ValueError`` (``OutputUnavailableError``) when the ref is
    read, not here.
    """
    config, _ = _ensure()
    ref: ray.ObjectRef = manager_for(config).output.remote(_check_id(workflow_id), task_id)
    return ref


def get_status(workflow_id: str) -> WorkflowStatus:
    _, store = _ensure()
    return store.get_workflow(_check_id(workflow_id)).status


def get_metadata(workflow_id: str, task_id: str | None = None) -> dict[str, Any]:
    """Ray Workflows' metadata of the workflow, or of one task (see ``executor.metadata``);
    an unknown workflow or task raises ``ValueError`` (``No such workflow_id ...``)."""
    config, store = _ensure()
    if task_id is None:
        return workflow_metadata(store, _check_id(workflow_id))
    return task_metadata(store, handles(config).blobs, _check_id(workflow_id), task_id)


def list_all(
    status_filter: WorkflowStatus | str | set[WorkflowStatus | str] | None = None,
) -> list[tuple[str, WorkflowStatus]]:
    """Workflows with their status, newest first; ``status_filter`` is a status, its
    name, or a set of either."""
    _, store = _ensure()
    statuses = None
    if isinstance(status_filter, (str, WorkflowStatus)):
        statuses = [_parse_status(status_filter)]
    elif isinstance(status_filter, (set, frozenset)):
        if not all(isinstance(item, (str, WorkflowStatus)) for item in status_filter):
            raise InvalidTypeError(
                "status_filter contains element which is not a type of `WorkflowStatus or "
                f"str`. {status_filter}"
            )
        statuses = [_parse_status(item) for item in status_filter]
    elif status_filter is not None:
        raise InvalidTypeError(
            "status_filter must be WorkflowStatus or a set of WorkflowStatus, "
            f"got {type(status_filter).__name__}"
        )
    return [(r.workflow_id, r.status) for r in store.list_workflows(statuses=statuses)]


def _parse_status(value: WorkflowStatus | str) -> WorkflowStatus:
    if isinstance(value, WorkflowStatus):
        return value
    try:
        return WorkflowStatus(str(value).upper())
    except ValueError:
        names = ", ".join(s.value for s in WorkflowStatus)
        raise InvalidInputError(f"Unknown workflow status {value!r}; use one of {names}") from None


# ------------------------------------------------------------------ managing


def cancel(workflow_id: str) -> None:
    """Stop a workflow and mark it CANCELED; its finished tasks stay checkpointed.

    As in Ray Workflows, a workflow that already ended is marked CANCELED too, and an
    unknown id is no error.
    """
    config, store = _ensure()
    try:
        record = store.get_workflow(_check_id(workflow_id))
    except WorkflowNotFoundError:
        return
    if record.status == WorkflowStatus.CANCELED:
        return
    if record.status in ACTIVE:
        stopped = ray.get(manager_for(config).cancel.remote(workflow_id))
        if stopped:
            return
    # Not running here: mark it; an owner elsewhere sees the mark at its next heartbeat.
    store.set_status(workflow_id, WorkflowStatus.CANCELED)
    if record.status not in ACTIVE:
        store.finish(workflow_id, None, WorkflowStatus.CANCELED)
    store.tasks_canceled(workflow_id)


def delete(workflow_id: str) -> None:
    """Remove a workflow, its tasks and checkpoints; refused while it is active."""
    config, store = _ensure()
    record = store.get_workflow(_check_id(workflow_id))
    if record.status in ACTIVE:
        raise WorkflowStillActiveError(workflow_id, "delete")
    store.delete_workflow(workflow_id)
    handles(config).blobs.delete_workflow(workflow_id)


# ---------------------------------------------------------------- composing


def continuation(dag: DAGNode) -> Any:
    """Return this from a task to continue the workflow with ``dag``.

    Outside a workflow, the DAG is simply executed and its result returned.
    """
    if not isinstance(dag, DAGNode):
        raise InvalidTypeError(
            f"Input should be a DAG (a remote function's .bind(...)), got {type(dag).__name__}"
        )
    if current_task() is not None:
        return Continuation(dag)
    return ray.get(dag.execute())  # type: ignore[arg-type]


def wait_for_completion(workflow_id: str, timeout: float = 60.0) -> WorkflowStatus:
    """Poll until a workflow is no longer active (for tools and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        status = get_status(workflow_id)
        if status not in ACTIVE or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


# ------------------------------------------------------------------- waiting


def send_event(workflow_id: str, event_key: str, payload: Any = None) -> int:
    """Deliver a JSON payload to a workflow's mailbox; returns the event's id.

    The event is stored even if the workflow has not reached its wait yet, and is
    consumed by exactly one ``wait_for_event(HTTPListener, event_key=...)``.
    """
    config, store = _ensure()
    event_id = store.send_event(
        _check_id(workflow_id), check_event_key(event_key), encode_payload(payload)
    )
    if ray.is_initialized():
        # Wake the waiter now rather than at its next poll; the stored row is what counts.
        manager_for(config).notify.remote(workflow_id, event_key)
    return event_id
