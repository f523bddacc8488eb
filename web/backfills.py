"""Backfills on the dashboard and the REST API: start one from a schedule's row (or
``POST /api/v1/schedules/<name>/backfill``), list them with their progress, pause,
unpause and cancel them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from executor.store.records import BackfillRecord, backfill_json
from web import actions
from web.errors import BadRequest, http_error

bp = Blueprint("backfills", __name__)

#: The fields of a backfill request, and the JSON types they take.
FIELDS: dict[str, tuple[type, ...]] = {
    "start": (str,),
    "end": (str,),
    "params": (dict, type(None)),
    "max_active": (int, type(None)),
    "reverse": (bool,),
    "rerun_failed": (bool,),
    "dry_run": (bool,),
    "yes": (bool,),
}
ACTIONS = ("pause", "unpause", "cancel")


def start(name: str, body: dict[str, Any]) -> tuple[BackfillRecord | None, list[str]]:
    """Check a request's fields (400 naming the bad one) and start the backfill."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(unknown)}; use {', '.join(FIELDS)}")
    for field in ("start", "end"):
        if field not in body:
            raise BadRequest(f"The backfill needs {field!r} (a date such as 2026-01-31)")
    for field, value in body.items():
        kinds = FIELDS[field]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise BadRequest(f"{field!r} must be {names}, got {type(value).__name__}")
    record, runs = actions._service().backfill(
        name,
        body["start"],
        body["end"],
        body.get("params") or {},
        max_active=body.get("max_active"),
        reverse=body.get("reverse", False),
        rerun_failed=body.get("rerun_failed", False),
        dry_run=body.get("dry_run", False),
        confirmed=body.get("yes", False),
    )
    return record, runs


# ----------------------------------------------------------------------- REST


@bp.post("/api/v1/schedules/<name>/backfill")
def create(name: str) -> tuple[Response, int]:
    actions._service().params_schema(name)  # an unknown name is a 404 before the body
    body = actions.parse_json(request.get_data() or b"{}", "The body")
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object: {"start": ..., "end": ...}')
    record, runs = start(name, body)
    status = 200 if record is None else 201
    return jsonify(backfill_id=record.backfill_id if record else None, runs=runs), status


@bp.get("/api/v1/backfills")
def index() -> Response:
    name = request.args.get("name") or None
    return jsonify(backfills=[backfill_json(r) for r in actions._service().backfills(name)])


@bp.get("/api/v1/backfills/<backfill_id>")
def show(backfill_id: str) -> Response:
    return jsonify(backfill_json(actions._service().get_backfill(backfill_id)))


def _change(backfill_id: str, action: str) -> Response:
    return jsonify(backfill_json(actions._service().change_backfill(backfill_id, action)))


@bp.post("/api/v1/backfills/<backfill_id>/pause")
def pause(backfill_id: str) -> Response:
    return _change(backfill_id, "pause")


@bp.post("/api/v1/backfills/<backfill_id>/unpause")
def unpause(backfill_id: str) -> Response:
    return _change(backfill_id, "unpause")


@bp.post("/api/v1/backfills/<backfill_id>/cancel")
def cancel(backfill_id: str) -> Response:
    return _change(backfill_id, "cancel")


# ---------------------------------------------------------------------- pages


@bp.post("/schedules/<name>/backfill")
def form(name: str) -> BaseResponse:
    data = request.form
    body: dict[str, Any] = {"start": data.get("start", ""), "end": data.get("end", "")}
    if data.get("max_active", "").strip():
        text = data["max_active"].strip()
        body["max_active"] = int(text) if text.isdecimal() and len(text) < 9 else -1
    for flag in ("reverse", "rerun_failed", "yes"):
        body[flag] = bool(data.get(flag))
    try:
        body["params"] = actions.parse_params(data.get("params", ""))
        record, runs = start(name, body)
    except Exception as error:
        answer = http_error(error)
        if answer is None or answer.status in (404, 503):
            raise
        flash(f"Backfill of {name} not started: {answer.message}", "error")
        return redirect(url_for("schedules.index"))
    assert record is not None
    flash(f"Backfill {record.backfill_id} started: {len(runs)} run(s) of {name}.", "ok")
    return redirect(url_for("schedules.index"))


@bp.post("/backfills/<backfill_id>/<action>")
def button(backfill_id: str, action: str) -> BaseResponse:
    if action not in ACTIONS:
        raise BadRequest(f"Unknown backfill action {action!r}; use {', '.join(ACTIONS)}")
    record = actions._service().change_backfill(backfill_id, action)
    flash(f"Backfill {record.backfill_id} is {record.state}.", "ok")
    return redirect(url_for("schedules.index"))


@bp.get("/parts/backfills")
def part() -> str:
    service = actions.scheduler_service()
    found = service.backfills() if service is not None else []
    return render_template("partials/backfills.html", backfills=found)
