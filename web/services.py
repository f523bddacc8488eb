"""What views reach through the app: the store, its configuration, and the scheduler."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request

from executor.config import StoreConfig, handles
from executor.store import SqlStore
from executor.store.migrate import upgrade
from web.errors import BadRequest


def attach_store(app: Flask) -> None:
    """Open (and migrate) the database named by ``DATABASE_URL`` and ``STORAGE``."""
    config = StoreConfig.resolve(app.config.get("DATABASE_URL"), app.config.get("STORAGE"))
    store = handles(config).store
    upgrade(store)
    app.extensions["gnomon.config"] = config
    app.extensions["gnomon.store"] = store
    app.before_request(_refuse_nul_characters)


def _refuse_nul_characters() -> None:
    """No id, name or key holds a NUL character, and PostgreSQL refuses one even in a
    lookup: answer 400 before a view takes it to the store, instead of a 500."""
    for source in (request.view_args or {}, request.args):
        for key, value in source.items():
            if isinstance(value, str) and "\x00" in value:
                raise BadRequest(f"{key} must not contain a NUL character")


def store() -> SqlStore:
    found: SqlStore = current_app.extensions["gnomon.store"]
    return found


def store_config() -> StoreConfig:
    found: StoreConfig = current_app.extensions["gnomon.config"]
    return found


def scheduler_service() -> Any | None:
    """The ``SchedulerService`` given as ``SCHEDULER`` (or attached by ``gnomon up``)."""
    return current_app.config.get("SCHEDULER") or current_app.extensions.get("gnomon.scheduler")
