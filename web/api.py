"""The REST API, ``/api/v1``, exactly as DESIGN.md lists it; the dashboard's buttons call
the same handlers in ``web.actions``.

Errors are ``{"error": "..."}``: 400 for a malformed request, 401 without a valid token,
404 for an unknown id or name, 409 when the state forbids the action, 413 for a payload
over 1 MiB. Times are ISO-8601 UTC strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from executor.store.records import pool_json, workflow_detail_json, workflow_json
from web import actions, pools
from web.errors import BadRequest
from web.listing import RunQuery
from web.services import store

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: The hand-kept OpenAPI description of this blueprint (shipped in the wheel).
OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"


def _accepted() -> Response:
    return Response(status=202)


def _json_body(default: Any = None) -> Any:
    body = request.get_data()
    if not body.strip():
        return default
    return actions.parse_json(body, "The body")


@bp.get("/openapi.yaml")
def openapi() -> Response:
    # Public (see ``auth.PUBLIC``): it describes the API, holds no data, and the tools
    # that render docs or generate clients fetch it without a token.
    return Response(OPENAPI_FILE.read_bytes(), mimetype="application/yaml")


@bp.get("/workflows")
def list_workflows() -> Response:
    if "q" in request.args:
        raise BadRequest("Unknown parameter 'q'; use status, name, code, limit and cursor")
    query = RunQuery.from_args(request.args)
    records, next_cursor = query.fetch(store())
    return jsonify(workflows=[workflow_json(r) for r in records], next=next_cursor)


@bp.get("/workflows/<path:workflow_id>")
def get_workflow(workflow_id: str) -> Response:
    record = store().get_workflow(workflow_id)
    tasks = store().load_tasks(workflow_id)
    forks, earlier = store().forks(workflow_id), store().task_attempts(workflow_id)
    return jsonify(workflow_detail_json(record, tasks, forks, earlier))


@bp.post("/workflows/<path:workflow_id>/resume")
def resume(workflow_id: str) -> Response:
    actions.resume(workflow_id)
    return _accepted()


@bp.post("/workflows/<path:workflow_id>/retry")
def retry(workflow_id: str) -> Response:
    body = _body_object(workflow_id, {"params"}, '{"params": {...}}')
    actions.retry(workflow_id, _params(body))
    return _accepted()


@bp.post("/workflows/<path:workflow_id>/clear")
def clear(workflow_id: str) -> Response:
    shape = '{"tasks": [...], "downstream": true, "code": "recorded"}'
    body = _body_object(workflow_id, {"tasks", "downstream", "code", "params"}, shape)
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise BadRequest(f"tasks must be a non-empty list of task ids; the body is {shape}")
    downstream = body.get("downstream", True)
    if not isinstance(downstream, bool):
        raise BadRequest(f"downstream must be true or false, got {downstream!r}")
    actions.clear(workflow_id, tasks, downstream, _code(body, "recorded"), _params(body))
    return _accepted()


@bp.post("/workflows/<path:workflow_id>/fork")
def fork(workflow_id: str) -> tuple[Response, int]:
    shape = '{"from_task": "...", "params": {...}, "code": "current", "new_id": "..."}'
    body = _body_object(workflow_id, {"from_task", "params", "code", "new_id"}, shape)
    from_task, new_id = body.get("from_task"), body.get("new_id")
    for field, value in (("from_task", from_task), ("new_id", new_id)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{field} must be a string, got {value!r}")
    code = _code(body, None) if "code" in body else None
    forked = actions.fork(workflow_id, from_task, _params(body), new_id, code)
    return jsonify(workflow_id=forked), 201


def _body_object(workflow_id: str, fields: set[str], shape: str) -> dict[str, Any]:
    """A JSON object with only ``fields`` (an empty body is ``{}``); an unknown run is a
    404 before the body is judged."""
    store().get_workflow(workflow_id)
    body = _json_body(default={})
    if not isinstance(body, dict):
        raise BadRequest(f"The body must be a JSON object: {shape}")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(unknown)}; the body is {shape}")
    return body


def _params(body: dict[str, Any]) -> dict[str, Any] | None:
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"params must be a JSON object, got {type(params).__name__}")
    return params


def _code(body: dict[str, Any], default: str | None) -> str | None:
    code = body.get("code", default)
    if code not in ("current", "recorded"):
        raise BadRequest(f'code must be "current" or "recorded", got {code!r}')
    return code


@bp.post("/workflows/<path:workflow_id>/cancel")
def cancel(workflow_id: str) -> Response:
    actions.cancel(workflow_id)
    return _accepted()


@bp.delete("/workflows/<path:workflow_id>")
def delete(workflow_id: str) -> Response:
    actions.delete(workflow_id)
    return Response(status=204)


@bp.post("/workflows/<path:workflow_id>/events/<event_key>")
def send_event(workflow_id: str, event_key: str) -> tuple[Response, int]:
    store().get_workflow(workflow_id)  # an unknown id is a 404 before the body is judged
    payload = actions.parse_payload(request.get_data())
    event_id = actions.send_event(workflow_id, event_key, payload)
    return jsonify(workflow_id=workflow_id, event_key=event_key, event_id=event_id), 202


@bp.get("/schedules")
def list_schedules() -> Response:
    return jsonify(
        schedules=[info.as_dict() for info in actions.schedules()],
        import_errors=actions.import_errors(),
    )


@bp.post("/schedules/<name>/trigger")
def trigger(name: str) -> tuple[Response, int]:
    body = _json_body(default={})
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object: {"params": {...}}')
    unknown = sorted(set(body) - {"params"})
    if unknown:
        raise BadRequest(f'Unknown field(s) {", ".join(unknown)}; the body is {{"params": {{}}}}')
    params = body.get("params") or {}
    workflow_id = actions.trigger(name, params, "api")
    return jsonify(workflow_id=workflow_id), 201


@bp.post("/schedules/<name>/pause")
def pause(name: str) -> Response:
    return jsonify(actions.pause(name).as_dict())


@bp.post("/schedules/<name>/unpause")
def unpause(name: str) -> Response:
    return jsonify(actions.unpause(name).as_dict())


@bp.get("/pools")
def list_pools() -> Response:
    return jsonify([pool_json(record) for record in store().list_pools()])


@bp.get("/pools/<name>")
def get_pool(name: str) -> Response:
    return jsonify(pool_json(store().get_pool(name)))


@bp.put("/pools/<name>")
def put_pool(name: str) -> Response:
    body = _json_body(default={})
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object: {"slots": N, "rate": "5/s"}')
    unknown = sorted(set(body) - {"slots", "rate"})
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(unknown)}; a pool has slots and rate")
    return jsonify(
        pool_json(pools.update(name, body.get("slots", pools.KEEP), body.get("rate", pools.KEEP)))
    )
