"""The Pools page: each concurrency pool's limits, slots in use and tasks waiting, and a
form to create a pool or change one. ``update`` is the handler the REST API shares."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from executor.errors import PoolNotFoundError
from executor.pools import check_pool_name, check_slots, parse_rate
from executor.store import PoolRecord
from web.errors import BadRequest, http_error
from web.services import store

bp = Blueprint("pools", __name__)

#: Keeps a pool's value: an argument of ``update`` that was not given.
KEEP: Any = object()


def update(name: str, slots: Any = KEEP, rate: Any = KEEP) -> PoolRecord:
    """Create pool ``name`` or change it; ``slots`` an integer, ``rate`` text such as
    ``5/s`` (or None: no rate). What is not given is kept; a new pool needs ``slots``."""
    check_pool_name(name)
    try:
        current: PoolRecord | None = store().get_pool(name)
    except PoolNotFoundError:
        current = None
    if slots is KEEP and current is None:
        raise BadRequest(f"Pool {name!r} does not exist yet: give it slots")
    new_slots = current.slots if slots is KEEP and current is not None else check_slots(slots)
    if rate is KEEP:
        new_rate = current.rate if current is not None else None
    else:
        new_rate = None if rate is None else parse_rate(rate)
    return store().set_pool(name, new_slots, new_rate)


def _page(error: str | None = None, draft: dict[str, str] | None = None) -> str:
    return render_template(
        "pools/list.html", pools=store().list_pools(), error=error, draft=draft or {}
    )


@bp.get("/pools")
def index() -> str:
    return _page()


@bp.post("/pools")
def save() -> BaseResponse | tuple[str, int]:
    form = {key: request.form.get(key, "").strip() for key in ("name", "slots", "rate")}
    try:
        slots = form["slots"]
        if not slots.lstrip("-").isdecimal():
            raise BadRequest(f"Slots must be a whole number, got {slots!r}")
        record = update(form["name"], int(slots), form["rate"] or None)
    except Exception as error:
        answer = http_error(error)
        if answer is None or answer.status >= 500:
            raise
        return _page(error=answer.message, draft=form), answer.status
    flash(f"Saved pool {record.name}.", "ok")
    return redirect(url_for("pools.index"))
