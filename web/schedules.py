"""The schedules page: triggers in words, next and last runs, Pause, Unpause, Trigger now."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from web import actions, trigger_form
from web.display import pretty_json
from web.errors import http_error
from web.services import scheduler_service, store

bp = Blueprint("schedules", __name__)


def _page(errors: dict[str, str] | None = None, drafts: dict[str, str] | None = None) -> str:
    service = scheduler_service()
    infos: list[Any] = []
    schemas: dict[str, Any] = {}
    if service is not None:
        infos = service.schedules()
        schemas = {info.name: service.params_schema(info.name) for info in infos}
    return render_template(
        "schedules/list.html",
        attached=service is not None,
        schedules=infos,
        # The JSON box holds what the typed fields cannot: params outside the schema.
        defaults={
            **{i.name: _untyped(schemas[i.name], actions.schedule_defaults(i.name)) for i in infos},
            **(drafts or {}),
        },
        fields={name: trigger_form.fields(schema) for name, schema in schemas.items()},
        recent={i.name: trigger_form.recent(store(), i.name) for i in infos},
        backfills=service.backfills() if service is not None else [],
        errors=errors or {},
        import_errors=actions.import_errors(),
        now=time.time(),
    )


def _untyped(schema: dict[str, Any], defaults: dict[str, Any]) -> str:
    typed = set(schema.get("properties") or {})
    return pretty_json({k: v for k, v in defaults.items() if k not in typed})


@bp.get("/schedules")
def index() -> str:
    return _page()


@bp.post("/schedules/<name>/trigger")
def trigger(name: str) -> BaseResponse | tuple[str, int]:
    text = request.form.get("params", "")
    try:
        service = scheduler_service()
        schema = service.params_schema(name) if service is not None else {}
        typed = trigger_form.params_from(request.form, schema)
        params = {**typed, **actions.parse_params(text)}
        workflow_id = actions.trigger(name, params, "manual")
    except Exception as error:
        answer = http_error(error)
        if answer is None or answer.status in (404, 503):
            raise
        return _page(errors={name: answer.message}, drafts={name: text}), answer.status
    flash(f"Started {workflow_id}.", "ok")
    return redirect(url_for("runs.run", workflow_id=workflow_id))


@bp.post("/schedules/<name>/pause")
def pause(name: str) -> BaseResponse:
    actions.pause(name)
    flash(f"Paused {name}: it will not fire until unpaused.", "ok")
    return redirect(url_for("schedules.index"))


@bp.post("/schedules/<name>/unpause")
def unpause(name: str) -> BaseResponse:
    info = actions.unpause(name)
    when = info.next_run_at.strftime("%Y-%m-%d %H:%M UTC") if info.next_run_at else "never"
    flash(f"Unpaused {name}; next run {when}.", "ok")
    return redirect(url_for("schedules.index"))
