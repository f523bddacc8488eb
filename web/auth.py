"""Who may use the dashboard: a bearer token, or the session cookie a login sets.

Every route but ``/healthz``, ``/login``, ``/api/v1/openapi.yaml`` and static files needs
one of them. The session keeps a digest of the token it was opened with, so changing
``API_TOKEN`` ends every session. Forms carry CSRF tokens; a request with a bearer token
is not a browser's and is exempt. Without any ``API_TOKEN`` the dashboard is open, which
``web.serve`` allows only on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response as BaseResponse

bp = Blueprint("auth", __name__)
#: Checked by ``guard`` (not on every request): bearer-token API calls are exempt.
csrf = CSRFProtect()

#: Endpoints anyone may reach.
PUBLIC = frozenset({"auth.login", "static", "ops.healthz", "api.openapi"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_digest(token: str) -> str:
    return hashlib.sha256(b"gnomon-session:" + token.encode()).hexdigest()


def _token() -> str | None:
    token = current_app.config.get("API_TOKEN")
    return str(token) if token else None


def _valid(candidate: str | None) -> bool:
    token = _token()
    if not token or not candidate:
        return False
    return hmac.compare_digest(candidate.encode(), token.encode())


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/metrics", "/healthz")


def _log_in() -> None:
    token = _token()
    assert token is not None
    session.clear()
    session["auth"] = token_digest(token)
    session.permanent = True


def guard() -> BaseResponse | None:
    """Runs before every request: the token or the session, then CSRF for browser writes."""
    bearer = _bearer()
    if request.endpoint in PUBLIC or _token() is None:
        _check_csrf(bearer)
        return None
    if bearer is not None:
        if _valid(bearer):
            g.auth = "bearer"
            return None
        return _unauthorized("Invalid API token", script=True)
    if "token" in request.args and request.method == "GET":
        return _login_from_query()
    if hmac.compare_digest(session.get("auth", ""), token_digest(_token() or "")):
        g.auth = "session"
        _check_csrf(bearer)
        return None
    return _unauthorized("Log in with the API token, or send it as a Bearer token")


def _check_csrf(bearer: str | None) -> None:
    """A browser's write must carry the CSRF token; a script's bearer call cannot be forged."""
    if request.method not in _SAFE_METHODS and bearer is None:
        csrf.protect()


def _login_from_query() -> BaseResponse:
    """``/?token=...``: the link ``gnomon up`` prints. Redirects to drop the token."""
    if not _valid(request.args.get("token")):
        return _unauthorized("That token is not valid")
    _log_in()
    rest = {key: value for key, value in request.args.items() if key != "token"}
    return redirect(request.path + (f"?{urlencode(rest)}" if rest else ""))


def _unauthorized(message: str, script: bool = False) -> BaseResponse:
    """JSON for the API and for scripts; the login page (or a redirect) for browsers."""
    if script or wants_json():
        response = jsonify(error=message)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="gnomon"'
        return response
    target = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        return Response(message, 401, headers={"HX-Redirect": target})
    if "token" in request.args or request.method != "GET":
        return Response(render_template("auth/login.html", error=message, next="/"), 401)
    return redirect(target)


def _safe_next(target: str | None) -> str:
    """Only paths on this site: ``//evil.example`` and ``https://...`` go home instead."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("runs.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    target = _safe_next(request.values.get("next"))
    if _token() is None:
        return redirect(target)
    if request.method == "GET":
        return render_template("auth/login.html", error=None, next=target)
    if not _valid(request.form.get("token", "").strip()):
        return render_template("auth/login.html", error="That token is not valid", next=target), 401
    _log_in()
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # ``guard`` decides
    #: A dashboard tab left open for hours must still submit its forms.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    app.before_request(guard)
    app.register_blueprint(bp)
