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

from executor.store.records import workflow_detail_json, workflow_json
from web import actions
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
        raise BadRequest("Unknown parameter 'q'; use status, name, limit and cursor")
    query = RunQuery.from_args(request.args)
    records, next_cursor = query.fetch(store())
    return jsonify(workflows=[workflow_json(r) for r in records], next=next_cursor)


@bp.get("/workflows/<path:workflow_id>")
def get_workflow(workflow_id: str) -> Response:
    record = store().get_workflow(workflow_id)
    return jsonify(workflow_detail_json(record, store().load_tasks(workflow_id)))


@bp.post("/workflows/<path:workflow_id>/resume")
def resume(workflow_id: str) -> Response:
    actions.resume(workflow_id)
    return _accepted()


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
    return jsonify([info.as_dict() for info in actions.schedules()])


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
