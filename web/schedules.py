"""The schedules page: triggers in words, next and last runs, Pause, Unpause, Trigger now."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from web import actions
from web.display import pretty_json
from web.errors import http_error
from web.services import scheduler_service

bp = Blueprint("schedules", __name__)


def _page(errors: dict[str, str] | None = None, drafts: dict[str, str] | None = None) -> str:
    service = scheduler_service()
    infos: list[Any] = service.schedules() if service is not None else []
    defaults = {info.name: pretty_json(actions.schedule_defaults(info.name)) for info in infos}
    return render_template(
        "schedules/list.html",
        attached=service is not None,
        schedules=infos,
        defaults={**defaults, **(drafts or {})},
        errors=errors or {},
        import_errors=actions.import_errors(),
        now=time.time(),
    )


@bp.get("/schedules")
def index() -> str:
    return _page()


@bp.post("/schedules/<name>/trigger")
def trigger(name: str) -> BaseResponse | tuple[str, int]:
    text = request.form.get("params", "")
    try:
        workflow_id = actions.trigger(name, actions.parse_params(text), "manual")
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
