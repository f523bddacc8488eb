"""The public API: Ray Workflows' ``workflow`` module, name for name, on current Ray.

from executor import workflow   # was: from ray import workflow
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import ray
from ray.dag import DAGNode

from executor.actors import session_cache
from executor.checkpoint import dumps
from executor.cluster import connect
from executor.config import StoreConfig, handles
from executor.dag import build_graph
from executor.errors import (
    InvalidInputError,
    InvalidTypeError,
    WorkflowCancellationError,
    WorkflowError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowNotResumableError,
    WorkflowStillActiveError,
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
from executor.options import options, validate_user_metadata
from executor.stages import Continuation, current_task
from executor.status import ACTIVE, RESUMABLE_FROM, WorkflowStatus
from executor.store import Store
from executor.store.migrate import upgrade

__all__ = [
    "EventListener",
    "HTTPListener",
    "WorkflowCancellationError",
    "WorkflowError",
    "WorkflowExecutionError",
    "WorkflowNotFoundError",
    "WorkflowNotResumableError",
    "WorkflowStatus",
    "WorkflowStillActiveError",
    "cancel",
    "continuation",
    "delete",
    "get_metadata",
    "get_output",
    "get_output_async",
    "get_status",
    "init",
    "list_all",
    "options",
    "resume",
    "resume_all",
    "resume_async",
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


def init(
    database_url: str | None = None,
    *,
    storage: str | None = None,
    max_running_workflows: int | None = None,
    max_pending_workflows: int | None = None,
) -> StoreConfig:
    """Choose the database and blob store, migrate the schema, and make sure Ray is up.

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
    global _config
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
    **kwargs: Any,
) -> Any:
    """Run a workflow to completion and return its output."""
    return _get(run_async(dag, *args, workflow_id=workflow_id, metadata=metadata, **kwargs))


def run_async(
    dag: DAGNode,
    *args: Any,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ray.ObjectRef:
    """Start a workflow; ``ray.get`` the returned ref for its output.

    Running an id that already exists returns its stored output, or resumes it.
    """
    ref = submit(dag, args, kwargs, workflow_id=workflow_id, metadata=metadata)
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
) -> ray.ObjectRef | None:
    """``run_async`` with the scheduler's extras: a workflow name and a trigger label.

    ``if_exists="ignore"`` makes submitting an existing id a no-op that returns None
    (a schedule's tick firing twice); the default returns its output or resumes it.
    ``max_active`` raises ``NoFreeSlotError`` rather than exceed that many active runs
    of ``name`` (a schedule's ``max_active_runs``).
    """
    config, store = _ensure()
    graph = build_graph(dag, args, kwargs or {})
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
    )
    if created:
        return manager.run.remote(workflow_id, None if blob else data, True, owner)
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
