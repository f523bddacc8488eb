"""The operations behind the dashboard's buttons and the REST API: one handler each.

Each checks what the run's or the schedule's state allows, so a button that should not
be there answers 409 instead of surprising anyone, then calls the public executor and
scheduler APIs. Runs are resumed, canceled and messaged through ``executor.workflow``,
which needs the Ray that ``gnomon up`` joins; without one they answer 503.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from flask import current_app

from executor.events import MAX_PAYLOAD_BYTES
from executor.status import ACTIVE, RESUMABLE_FROM, WorkflowStatus
from executor.store import WorkflowRecord
from web.errors import BadRequest, Conflict, PayloadTooLarge, Unavailable, http_error
from web.services import scheduler_service, store, store_config

log = logging.getLogger(__name__)

#: Statuses a run can be canceled from.
CANCELABLE = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.PENDING})
#: How long Resume waits for the run to be picked up before it answers anyway.
PICKUP_SECONDS = 3.0
#: Runs in these statuses take no more events (the mailbox refuses them).
CLOSED = frozenset({WorkflowStatus.SUCCESSFUL, WorkflowStatus.CANCELED})


def allowed(record: WorkflowRecord) -> set[str]:
    """The actions a run's status allows, as the run page shows its buttons."""
    actions = {"fork"}  # a fork copies what finished, whatever the run is doing now
    if record.status in RESUMABLE_FROM:
        actions.add("resume")
        if registered(record):
            actions.add("retry")
    if record.status not in ACTIVE:
        actions.add("clear")
    if record.status in CANCELABLE:
        actions.add("cancel")
    if record.status not in ACTIVE:
        actions.add("delete")
    if record.status not in CLOSED:
        actions.add("send_event")
    return actions


def _executor() -> Any:
    """``executor.workflow`` on this app's database, in a process that has Ray."""
    import ray

    from executor import workflow

    if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        raise Unavailable(
            "This dashboard process has no Ray cluster, so it cannot run workflows; "
            "serve it with `gnomon up` (or set RAY_ADDRESS)"
        )
    config = store_config()
    workflow.init(config.database_url, storage=config.storage)
    return workflow


def _watch(workflow_id: str, ref: Any) -> None:
    """Keep the run's ref until it resolves, so Ray does not log its error as unread."""
    service = scheduler_service()
    launcher = getattr(service, "launcher", None)
    if launcher is None:
        from scheduler.runs import RunLauncher

        launcher = current_app.extensions.get("gnomon.launcher")
        if launcher is None:
            launcher = current_app.extensions["gnomon.launcher"] = RunLauncher(store())
    launcher.watch(workflow_id, ref)
    launcher.reap()


def _refuse(record: WorkflowRecord, action: str, allowed_from: str) -> None:
    raise Conflict(
        f"Workflow {record.workflow_id!r} is {record.status.value}; "
        f"only {allowed_from} runs can be {action}"
    )


def resume(workflow_id: str) -> None:
    record = store().get_workflow(workflow_id)
    if "resume" not in allowed(record):
        _refuse(record, "resumed", "FAILED, RESUMABLE or CANCELED")
    _watch(workflow_id, _executor().resume_async(workflow_id))
    _until_picked_up(workflow_id, record.status)


def registered(record: WorkflowRecord) -> bool:
    """Whether the run was started from a registered workflow, so its graph can be built
    again from the code loaded now."""
    return isinstance(record.user_metadata.get("schedule"), str)


def _rebuild() -> Any:
    """How this dashboard's scheduler builds a registered run's graph again; None to use
    the process's registry."""
    registry = getattr(scheduler_service(), "registry", None)
    return None if registry is None else registry.rebuild


def retry(workflow_id: str, params: dict[str, Any] | None) -> None:
    """Run a failed, resumable or canceled registered run again with the code loaded
    now; what finished keeps its result."""
    record = store().get_workflow(workflow_id)
    if record.status in ACTIVE:
        _refuse(record, "retried", "finished")
    ref = _executor().retry(workflow_id, params=params, rebuild=_rebuild())
    _watch(workflow_id, ref)
    _until_picked_up(workflow_id, record.status)


def clear(
    workflow_id: str,
    tasks: list[str],
    downstream: bool,
    code: str | None,
    params: dict[str, Any] | None,
) -> None:
    """Run ``tasks`` (and with ``downstream`` what depends on them) of an ended run again."""
    record = store().get_workflow(workflow_id)
    if "clear" not in allowed(record):
        _refuse(record, "cleared", "finished")
    ref = _executor().clear(
        workflow_id,
        tasks,
        downstream=downstream,
        code=code or "recorded",
        params=params,
        rebuild=_rebuild(),
    )
    _watch(workflow_id, ref)
    _until_picked_up(workflow_id, record.status)


def fork(
    workflow_id: str,
    from_task: str | None,
    params: dict[str, Any] | None,
    new_id: str | None,
    code: str | None,
) -> str:
    """A new run from this one's finished tasks; returns its id."""
    forked: str = _executor().fork(
        workflow_id,
        from_task=from_task or None,
        params=params,
        new_id=new_id or None,
        code=code,
        rebuild=_rebuild(),
    )
    return forked


def preview(workflow_id: str, tasks: list[str], downstream: bool, code: str | None) -> list[str]:
    """The tasks a retry (no ``tasks``) or a clear or fork of ``tasks`` would run."""
    found: list[str] = _executor().preview(
        workflow_id, tasks=tasks, downstream=downstream, code=code, rebuild=_rebuild()
    )
    return found


def loaded_code(record: WorkflowRecord) -> str | None:
    """The code version of the run's registered workflow as loaded now (None if it is
    not a registered run, or not loaded here)."""
    registry = getattr(scheduler_service(), "registry", None)
    name = record.user_metadata.get("schedule")
    schedule = registry.find(name) if registry is not None and isinstance(name, str) else None
    return None if schedule is None else schedule.code_version


def _until_picked_up(workflow_id: str, old: WorkflowStatus) -> None:
    """Wait briefly for an owner to take the run, so the page after Resume shows it live."""
    deadline = time.monotonic() + PICKUP_SECONDS
    while time.monotonic() < deadline:
        if store().get_workflow(workflow_id).status != old:
            return
        time.sleep(0.05)


def cancel(workflow_id: str) -> None:
    record = store().get_workflow(workflow_id)
    if "cancel" not in allowed(record):
        _refuse(record, "canceled", "RUNNING or PENDING")
    _executor().cancel(workflow_id)


def delete(workflow_id: str) -> None:
    record = store().get_workflow(workflow_id)
    if "delete" not in allowed(record):
        _refuse(record, "deleted", "finished")
    _executor().delete(workflow_id)


def parse_payload(body: bytes | str) -> Any:
    """An event payload: JSON text of at most 1 MiB."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"The payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} (1 MiB)"
        )
    if not body.strip():
        raise BadRequest("The payload must be JSON (send null for no payload)")
    return parse_json(body, "The payload")


def parse_json(text: bytes | str, what: str) -> Any:
    """JSON from a request, or a 400 naming ``what``. NaN and Infinity are refused (a run's
    metadata holding one would make its later responses invalid JSON), and so is nesting
    deeper than Python's recursion limit."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BadRequest(f"{what} is not valid JSON: {error}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def send_event(workflow_id: str, event_key: str, payload: Any) -> int:
    record = store().get_workflow(workflow_id)
    if "send_event" not in allowed(record):
        raise Conflict(
            f"Workflow {workflow_id!r} is {record.status.value}; it takes no more events"
        )
    event_id: int = _executor().send_event(workflow_id, event_key, payload)
    return event_id


def _service() -> Any:
    service = scheduler_service()
    if service is None:
        raise Unavailable("This dashboard has no scheduler attached; start it with `gnomon up`")
    return service


def parse_params(text: str) -> dict[str, Any]:
    """Trigger params from the form: a JSON object."""
    if not text.strip():
        return {}
    params = parse_json(text, "Params")
    if not isinstance(params, dict):
        raise BadRequest(f"Params must be a JSON object, got {type(params).__name__}")
    return params


def trigger(name: str, params: dict[str, Any], label: str) -> str:
    """Start a run of schedule ``name`` now; returns its workflow id."""
    if not isinstance(params, dict):
        raise BadRequest(f"params must be a JSON object, got {type(params).__name__}")
    service = _service()
    try:
        workflow_id: str = service.trigger(name, params, trigger=label)
    except Exception as error:
        if http_error(error) is not None:
            raise
        # A manual trigger runs the schedule's DAG factory here; its error is the user's.
        log.info("Trigger of %s failed", name, exc_info=True)
        text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        raise BadRequest(f"The DAG factory of {name!r} raised {text}") from None
    return workflow_id


def schedules() -> list[Any]:
    """Every schedule in the scheduler's job store, by name."""
    found: list[Any] = _service().schedules()
    return found


def pause(name: str) -> Any:
    service = _service()
    service.pause(name)
    return service.schedule(name)


def unpause(name: str) -> Any:
    service = _service()
    service.unpause(name)
    return service.schedule(name)


def schedule_defaults(name: str) -> dict[str, Any]:
    """A schedule's default params, when it is registered in this process."""
    service = scheduler_service()
    registry = getattr(service, "registry", None)
    found = registry.find(name) if registry is not None else None
    return dict(found.params) if found is not None else {}


def import_errors() -> dict[str, str]:
    """dags files that failed to import: path -> one-line error."""
    registry = getattr(scheduler_service(), "registry", None)
    return dict(getattr(registry, "import_errors", {}) or {})
