"""Pages about runs: the runs list, a run's page, their live parts, and the run buttons.

Live parts are htmx fragments under ``/parts/``. A run page's header polls ``live`` (every
2 s while the run is active, every 10 s after), which also updates the timeline, events and
details out of band and fires ``gnomon:tick``. ``gnomon.js`` turns a tick into
``gnomon:changed`` while the run is active or when its status changed, and only then do the
task table and the graph reload: a finished 2,000-task run is not re-read three times a tick.
"""

from __future__ import annotations

import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from executor.errors import WorkflowNotFoundError
from executor.status import ACTIVE, TaskStatus, WorkflowStatus
from executor.store import TaskRecord, WorkflowRecord
from web import actions
from web.errors import BadRequest, NotFound, http_error
from web.graph import task_graph, task_label, timeline
from web.listing import RunQuery
from web.services import store

bp = Blueprint("runs", __name__)

#: Rows of the task table per page.
TASKS_PER_PAGE = 50
#: A task's log is shown from its end; the full text is a download away.
LOG_TAIL_CHARS = 64 * 1024
#: Task statuses whose logs may still grow.
_TASK_ACTIVE = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.RUNNING,
        TaskStatus.WAITING,
        TaskStatus.QUEUED,
        TaskStatus.RETRYING,
    }
)


# ------------------------------------------------------------------ the list


@bp.get("/")
def index() -> str:
    query = RunQuery.from_args(request.args)
    records, next_cursor = query.fetch(store())
    return render_template(
        "runs/list.html",
        query=query,
        records=records,
        next_cursor=next_cursor,
        statuses=[status.value for status in WorkflowStatus],
        now=time.time(),
    )


@bp.get("/parts/runs")
def rows() -> str:
    query = RunQuery.from_args(request.args)
    records, _next_cursor = query.fetch(store())
    return render_template("partials/run_rows.html", query=query, records=records, now=time.time())


# ------------------------------------------------------------------ one run


def _task_logs(workflow_id: str, task_id: str) -> list[Any] | None:
    """Each attempt's captured output; None when the store cannot capture logs."""
    reader = getattr(store(), "task_logs", None)
    return None if reader is None else list(reader(workflow_id, task_id))


def _spotlight(tasks: list[TaskRecord]) -> TaskRecord | None:
    """The task whose logs an operator wants first: a failed one, else a running one."""
    for status in (TaskStatus.FAILED, TaskStatus.RUNNING, TaskStatus.RETRYING, TaskStatus.WAITING):
        found = [task for task in tasks if task.status == status]
        if found:
            return max(found, key=lambda task: task.started_at or 0)
    return None


@bp.get("/runs/<path:workflow_id>")
def run(workflow_id: str) -> str:
    return _run_page(workflow_id)


def _run_page(workflow_id: str, form_error: str | None = None, draft: Any = None) -> str:
    record = store().get_workflow(workflow_id)
    tasks = store().load_tasks(workflow_id)
    spotlight = _spotlight(tasks)
    return render_template(
        "runs/detail.html",
        **{**_live_context(record, tasks), **_task_page(tasks, None, 1)},
        earlier=_earlier(workflow_id),
        logs_task=spotlight,
        logs=_task_logs(workflow_id, spotlight.task_id) if spotlight else None,
        log_tail=LOG_TAIL_CHARS,
        tailing=spotlight is not None and spotlight.status in _TASK_ACTIVE,
        form_error=form_error,
        draft=draft or {},
    )


def _live_context(record: WorkflowRecord, tasks: list[TaskRecord]) -> dict[str, Any]:
    now = time.time()
    return {
        "record": record,
        "allowed": actions.allowed(record),
        "active": record.status in ACTIVE,
        "timeline": timeline(tasks, now),
        "events": store().list_events(record.workflow_id),
        "waiting": [task for task in tasks if task.status == TaskStatus.WAITING],
        "task_count": len(tasks),
        "now": now,
        "loaded_code": actions.loaded_code(record),
        "forks": store().forks(record.workflow_id),
    }


def _earlier(workflow_id: str) -> dict[str, list[Any]]:
    """Each task's earlier attempts (from before a retry, a clear or a fork), oldest first."""
    found: dict[str, list[Any]] = {}
    for attempt in store().task_attempts(workflow_id):
        found.setdefault(attempt.task_id, []).append(attempt)
    return found


#: htmx stops polling an element whose answer has this status.
STOP_POLLING = 286


@bp.get("/parts/live/<path:workflow_id>")
def live(workflow_id: str) -> Response:
    try:
        record = store().get_workflow(workflow_id)
    except WorkflowNotFoundError:  # deleted while the page was open
        html = render_template("partials/run_gone.html", workflow_id=workflow_id)
        return Response(html, STOP_POLLING)
    tasks = store().load_tasks(workflow_id)
    html = render_template("partials/run_live.html", **_live_context(record, tasks))
    # After settling, so the page's scripts read the new header (see gnomon.js).
    return Response(html, headers={"HX-Trigger-After-Settle": "gnomon:tick"})


def _task_page(tasks: list[TaskRecord], status: str | None, page: int) -> dict[str, Any]:
    """One page of the task table, optionally only the tasks in ``status``."""
    shown = tasks
    if status:
        wanted = TaskStatus(status)
        shown = [task for task in tasks if task.status == wanted]
    pages = max(1, -(-len(shown) // TASKS_PER_PAGE))
    page = min(max(page, 1), pages)
    start = (page - 1) * TASKS_PER_PAGE
    return {
        "tasks": shown[start : start + TASKS_PER_PAGE],
        "task_total": len(shown),
        "task_first": start + 1,
        "task_page": page,
        "task_pages": pages,
        "task_status": status or "",
        "task_statuses": [s.value for s in TaskStatus],
        "now": time.time(),
        "slot_waits": _slot_waits(tasks),
    }


def _slot_waits(tasks: list[TaskRecord]) -> dict[str, Any]:
    """Where the run's tasks waiting for a pool slot stand in its line."""
    if not any(task.status == TaskStatus.QUEUED for task in tasks):
        return {}
    return dict(store().slot_waits(tasks[0].workflow_id))


@bp.get("/parts/tasks/<path:workflow_id>")
def task_table(workflow_id: str) -> str:
    record = store().get_workflow(workflow_id)
    status = (request.args.get("status") or "").upper() or None
    if status and status not in TaskStatus.__members__:
        raise BadRequest(f"Unknown task status {status!r}")
    page_text = request.args.get("page", "1")
    # int() refuses digits such as '²' (isdigit but not isdecimal), and 4,300+ digits.
    page = int(page_text) if page_text.isdecimal() and len(page_text) <= 9 else 1
    tasks = store().load_tasks(workflow_id)
    return render_template(
        "partials/task_table.html",
        record=record,
        allowed=actions.allowed(record),
        earlier=_earlier(workflow_id),
        **_task_page(tasks, status, page),
    )


@bp.get("/parts/graph/<path:workflow_id>")
def graph(workflow_id: str) -> Response:
    record = store().get_workflow(workflow_id)
    found = task_graph(store().load_tasks(workflow_id))
    found["status"] = record.status.value
    found["active"] = record.status in ACTIVE
    return jsonify(found)


def _task(workflow_id: str) -> TaskRecord:
    task_id = request.args.get("task_id", "")
    if not task_id:
        raise NotFound("Name a task with ?task_id=")
    return store().get_task(workflow_id, task_id)


@bp.get("/parts/logs/<path:workflow_id>")
def logs(workflow_id: str) -> str:
    task = _task(workflow_id)
    return render_template(
        "partials/task_logs.html",
        record=store().get_workflow(workflow_id),
        logs_task=task,
        logs=_task_logs(workflow_id, task.task_id),
        log_tail=LOG_TAIL_CHARS,
        tailing=task.status in _TASK_ACTIVE,
    )


@bp.get("/logs/<path:workflow_id>")
def log_text(workflow_id: str) -> Response:
    """One attempt's whole captured output, as plain text."""
    task = _task(workflow_id)
    attempt_text = request.args.get("attempt", "")
    found = _task_logs(workflow_id, task.task_id) or []
    for entry in found:
        if str(entry.attempt) == attempt_text:
            return Response(entry.text, mimetype="text/plain")
    raise NotFound(f"No log of attempt {attempt_text!r} of task {task.task_id!r}")


# ------------------------------------------------------------------ buttons


def _done(workflow_id: str, message: str) -> BaseResponse:
    flash(message, "ok")
    return redirect(url_for("runs.run", workflow_id=workflow_id))


@bp.post("/runs/<path:workflow_id>/resume")
def resume(workflow_id: str) -> BaseResponse:
    actions.resume(workflow_id)
    return _done(workflow_id, "Resumed: finished tasks keep their results.")


#: What each rerun's dialog asks, and how its button reads.
RERUNS = {
    "retry": ("Retry with current code", "Retry"),
    "clear": ("Clear", "Clear and run again"),
    "fork": ("Fork", "Start the fork"),
}


@bp.get("/parts/rerun/<path:workflow_id>")
def rerun_dialog(workflow_id: str) -> str:
    """The dialog before a retry, a clear or a fork: which tasks will run, or why not."""
    record = store().get_workflow(workflow_id)
    action = request.args.get("action", "retry")
    if action not in RERUNS:
        raise BadRequest(f"Unknown action {action!r}; use retry, clear or fork")
    task_id = request.args.get("task_id") or None
    if action == "clear" and task_id is None:
        raise BadRequest("Name the task to clear with ?task_id=")
    downstream = request.args.get("downstream") == "1"
    code = request.args.get("code") or ("recorded" if action == "clear" else None)
    if action == "fork" and code is None:
        code = "current" if actions.registered(record) else "recorded"
    again: list[str] = []
    refusal = None
    try:
        again = actions.preview(workflow_id, [task_id] if task_id else [], downstream, code)
    except Exception as error:
        answer = http_error(error)
        if answer is None or answer.status == 404:
            raise
        refusal = answer.message
    return render_template(
        "partials/rerun_dialog.html",
        record=record,
        action=action,
        title=RERUNS[action][0],
        confirm=RERUNS[action][1],
        task_id=task_id,
        downstream=downstream,
        code=code,
        registered=actions.registered(record),
        again=again,
        labels={task.task_id: task_label(task) for task in store().load_tasks(workflow_id)},
        refusal=refusal,
    )


@bp.post("/runs/<path:workflow_id>/retry")
def retry(workflow_id: str) -> BaseResponse:
    actions.retry(workflow_id, None)
    return _done(workflow_id, "Retrying with current code: finished tasks keep their results.")


@bp.post("/runs/<path:workflow_id>/clear")
def clear(workflow_id: str) -> BaseResponse:
    task_id = request.form.get("task_id", "")
    downstream = request.form.get("downstream") == "1"
    actions.clear(workflow_id, [task_id], downstream, request.form.get("code") or None, None)
    also = " and everything downstream" if downstream else ""
    return _done(workflow_id, f"Cleared {task_id}{also}: it runs again.")


@bp.post("/runs/<path:workflow_id>/fork")
def fork(workflow_id: str) -> BaseResponse:
    forked = actions.fork(
        workflow_id,
        request.form.get("task_id") or None,
        None,
        request.form.get("new_id", "").strip() or None,
        request.form.get("code") or None,
    )
    return _done(forked, f"Forked from {workflow_id}: finished tasks were copied.")


@bp.post("/runs/<path:workflow_id>/cancel")
def cancel(workflow_id: str) -> BaseResponse:
    actions.cancel(workflow_id)
    return _done(workflow_id, "Canceled.")


@bp.post("/runs/<path:workflow_id>/delete")
def delete(workflow_id: str) -> BaseResponse:
    actions.delete(workflow_id)
    flash(f"Deleted {workflow_id}.", "ok")
    return redirect(url_for("runs.index"))


@bp.post("/runs/<path:workflow_id>/events")
def send_event(workflow_id: str) -> BaseResponse | tuple[str, int]:
    key = request.form.get("event_key", "").strip()
    text = request.form.get("payload", "")
    try:
        payload = actions.parse_payload(text)
        actions.send_event(workflow_id, key, payload)
    except Exception as error:
        answer = http_error(error)
        if answer is None or answer.status == 404:
            raise
        draft = {"event_key": key, "payload": text}
        return _run_page(workflow_id, form_error=answer.message, draft=draft), answer.status
    return _done(workflow_id, f"Sent event {key!r}.")
