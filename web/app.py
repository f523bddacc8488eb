"""The dashboard's app factory: configuration, the store, blueprints, headers and errors."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from executor.config import DATA_DIR
from executor.errors import WorkflowError
from web import alerts, api, auth, backfills, display, metrics, pools, runs, schedules
from web.errors import DatabaseUnavailable, HttpError, http_error
from web.services import attach_store

log = logging.getLogger(__name__)

#: Every key ``create_app`` reads; each can also come from ``$GNOMON_<KEY>``.
DEFAULTS: dict[str, Any] = {
    #: SQLAlchemy URL; None means ``$GNOMON_DATABASE_URL`` or SQLite in ``~/.gnomon``.
    "DATABASE_URL": None,
    #: Blob store of large checkpoints; None means ``$GNOMON_STORAGE`` or ``~/.gnomon/blobs``.
    "STORAGE": None,
    #: The bearer token (and the login token). None: read ``api_token`` in the data dir.
    "API_TOKEN": None,
    #: A ``scheduler.SchedulerService`` for the schedules page and triggers.
    "SCHEDULER": None,
    #: Signs session cookies; derived from the token when unset, so restarts keep sessions.
    "SECRET_KEY": None,
    #: Seconds between the pages' live updates.
    "POLL_SECONDS": 2,
}

#: The event payload limit is 1 MiB; a form carrying one needs a little more.
MAX_BODY_BYTES = 2 << 20

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The login link carries the token in its query string: never pass a URL on.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The dashboard and REST API. ``config`` overrides ``$GNOMON_*``, which overrides
    ``DEFAULTS``."""
    app = Flask(__name__)  # templates/ and static/ next to this module
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("GNOMON")
    app.config.from_mapping(config or {})
    _configure_secrets(app, explicit_token="API_TOKEN" in (config or {}))
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.autoescape = True  # every template, whatever its extension
    attach_store(app)
    display.init_app(app)
    auth.init_app(app)
    app.register_blueprint(runs.bp)
    app.register_blueprint(schedules.bp)
    app.register_blueprint(pools.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(backfills.bp)
    alerts.init_app(app)
    metrics.init_app(app)
    app.after_request(_security_headers)
    _register_error_handlers(app)
    return app


def _configure_secrets(app: Flask, explicit_token: bool) -> None:
    token = app.config.get("API_TOKEN")
    if token is None and not explicit_token:
        # What ``gnomon up`` generated (mode 0600) when $GNOMON_API_TOKEN was unset.
        path = DATA_DIR / "api_token"
        if path.is_file():
            token = path.read_text().strip() or None
    # $GNOMON_API_TOKEN=123 arrives as an int from from_prefixed_env's JSON parsing.
    app.config["API_TOKEN"] = str(token) if token not in (None, "") else None
    if not app.config.get("SECRET_KEY"):
        if app.config["API_TOKEN"]:
            seed = f"gnomon-secret:{app.config['API_TOKEN']}".encode()
            app.config["SECRET_KEY"] = hashlib.sha256(seed).hexdigest()
        else:
            app.config["SECRET_KEY"] = secrets.token_hex(32)


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_response(status: int, message: str) -> tuple[Any, int]:
    if auth.wants_json():
        return jsonify(error=message), status
    return render_template("error.html", status=status, message=message), status


def _unavailable_response(error: DatabaseUnavailable) -> Response:
    """503 with ``Retry-After``. An htmx poll gets the banner, swapped into the page's
    ``#unavailable`` slot (``gnomon.js``) instead of over the part it polls, so the page
    stays and recovers at the next good poll; a page load gets a page that reloads."""
    headers = {"Retry-After": str(error.RETRY_SECONDS)}
    if auth.wants_json():
        response = jsonify(error=error.message)
    elif request.headers.get("HX-Request"):
        headers.update({"HX-Retarget": "#unavailable", "HX-Reswap": "outerHTML"})
        response = Response(render_template("partials/unavailable.html", message=error.message))
    else:
        # Reloading the answer to a form would send a GET to the form's action.
        retry = error.RETRY_SECONDS if request.method == "GET" else None
        response = Response(
            render_template("unavailable.html", message=error.message, retry_seconds=retry)
        )
    response.status_code = error.status
    response.headers.update(headers)
    return response


def _answer(error: HttpError) -> Any:
    if isinstance(error, DatabaseUnavailable):
        return _unavailable_response(error)
    return _error_response(error.status, error.message)


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HttpError)
    def on_http_error(error: HttpError) -> Any:
        return _answer(error)

    @app.errorhandler(CSRFError)
    def on_csrf(error: CSRFError) -> tuple[Any, int]:
        return _error_response(400, f"{error.description} Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def on_http_exception(error: HTTPException) -> Any:
        if error.code is None or error.code < 400:
            return error
        return _error_response(error.code, error.description or error.name)

    @app.errorhandler(WorkflowError)
    def on_workflow_error(error: WorkflowError) -> Any:
        return on_exception(error)

    @app.errorhandler(Exception)
    def on_exception(error: Exception) -> Any:
        answer = http_error(error)
        if answer is None:
            log.exception("Unexpected error on %s %s", request.method, request.path)
            return _error_response(500, "Internal server error")
        if isinstance(answer, DatabaseUnavailable):
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            log.warning("Database unavailable on %s %s: %s", request.method, request.path, reason)
        return _answer(answer)
