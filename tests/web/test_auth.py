"""Who gets in: the bearer token, the login session, CSRF on forms, security headers."""

from __future__ import annotations

import pytest
from flask import Flask

from executor.status import WorkflowStatus
from tests.web.conftest import BEARER, TOKEN, csrf_of, seed
from web import serve
from web.errors import InsecureBindError

#: Every route with the method it answers, and an argument that exists or not.
ROUTES = [
    ("GET", "/"),
    ("GET", "/parts/runs"),
    ("GET", "/runs/some-id"),
    ("GET", "/parts/live/some-id"),
    ("GET", "/parts/tasks/some-id"),
    ("GET", "/parts/graph/some-id"),
    ("GET", "/parts/logs/some-id?task_id=t"),
    ("GET", "/logs/some-id?task_id=t&attempt=1"),
    ("POST", "/runs/some-id/resume"),
    ("POST", "/runs/some-id/cancel"),
    ("POST", "/runs/some-id/delete"),
    ("POST", "/runs/some-id/events"),
    ("GET", "/schedules"),
    ("POST", "/schedules/some-name/trigger"),
    ("POST", "/schedules/some-name/pause"),
    ("POST", "/schedules/some-name/unpause"),
    ("GET", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows/some-id"),
    ("POST", "/api/v1/workflows/some-id/resume"),
    ("POST", "/api/v1/workflows/some-id/cancel"),
    ("DELETE", "/api/v1/workflows/some-id"),
    ("POST", "/api/v1/workflows/some-id/events/key"),
    ("GET", "/api/v1/schedules"),
    ("POST", "/api/v1/schedules/some-name/trigger"),
    ("POST", "/api/v1/schedules/some-name/pause"),
    ("POST", "/api/v1/schedules/some-name/unpause"),
    ("GET", "/metrics"),
]


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Auth does not depend on the database: one is enough here."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_healthz_needs_the_token(app: Flask, method: str, path: str) -> None:
    client = app.test_client()
    anonymous = client.open(path, method=method)
    wrong = client.open(path, method=method, headers={"Authorization": "Bearer nope"})

    assert wrong.status_code == 401
    if path.startswith(("/api/", "/metrics")):
        assert anonymous.status_code == 401
        assert anonymous.json == {"error": anonymous.json["error"]}
        assert anonymous.json["error"]
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    elif method == "GET":
        assert anonymous.status_code == 302
        assert anonymous.headers["Location"].startswith("/login?next=")
    else:
        assert anonymous.status_code == 401
        assert 'name="token"' in anonymous.text
    assert client.get("/healthz").json == {"ok": True}


def test_login_form_sets_a_session_that_opens_pages_and_the_api(app: Flask) -> None:
    client = app.test_client()
    form = client.get("/login?next=/schedules")
    wrong = client.post("/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert wrong.status_code == 401
    assert "not valid" in wrong.text

    right = client.post(
        "/login", data={"token": TOKEN, "next": "/schedules", "csrf_token": csrf_of(form.text)}
    )
    assert right.status_code == 302
    assert right.headers["Location"] == "/schedules"
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/workflows").status_code == 200
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_login_without_csrf_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/login", data={"token": TOKEN}).status_code == 400
    assert client.get("/").status_code == 302


def test_token_in_the_url_logs_in_and_is_dropped_from_it(app: Flask) -> None:
    client = app.test_client()
    bad = client.get("/?token=nope")
    assert bad.status_code == 401

    good = client.get(f"/?token={TOKEN}&status=FAILED")
    assert good.status_code == 302
    assert good.headers["Location"] == "/?status=FAILED"
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_login_never_redirects_off_site(app: Flask, target: str) -> None:
    client = app.test_client()
    form = client.get("/login")
    response = client.post(
        "/login", data={"token": TOKEN, "next": target, "csrf_token": csrf_of(form.text)}
    )
    assert response.headers["Location"] == "/"


def test_a_new_token_ends_old_sessions(make_app, workflow) -> None:
    first = make_app()
    client = first.test_client()
    client.get(f"/?token={TOKEN}")
    assert client.get("/").status_code == 200

    second = make_app(API_TOKEN="another-token")
    thief = second.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert thief.get("/").status_code == 302


def test_session_forms_need_csrf_and_bearer_calls_do_not(app: Flask, store, workflow_id) -> None:
    seed(store, workflow_id, WorkflowStatus.SUCCESSFUL)
    client = app.test_client()
    page = client.get(f"/runs/{workflow_id}?token={TOKEN}", follow_redirects=True)

    refused = client.post(f"/runs/{workflow_id}/delete")
    assert refused.status_code == 400
    assert "CSRF" in refused.text
    cookie_api = client.delete(f"/api/v1/workflows/{workflow_id}")
    assert cookie_api.status_code == 400
    assert "CSRF" in cookie_api.json["error"]
    assert store.get_workflow(workflow_id)

    header = client.post(f"/runs/{workflow_id}/delete", headers={"X-CSRFToken": csrf_of(page.text)})
    assert header.status_code == 302
    seed(store, workflow_id, WorkflowStatus.SUCCESSFUL)
    assert (
        app.test_client().delete(f"/api/v1/workflows/{workflow_id}", headers=BEARER).status_code
        == 204
    )


def test_security_headers_on_pages_api_and_static(app: Flask) -> None:
    client = app.test_client()
    for path in ["/login", "/healthz", "/static/gnomon.css", "/api/v1/workflows"]:
        response = client.get(path, headers=BEARER)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/", headers=BEARER).headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_script_or_style(browser) -> None:
    html = browser.get("/").text + browser.get("/schedules").text + browser.get("/login").text
    assert "<script>" not in html
    assert "<script " not in html.replace("<script src=", "")
    assert " style=" not in html
    assert "<style" not in html


def test_without_a_token_the_dashboard_is_open_but_only_on_loopback(make_app, workflow) -> None:
    open_app = make_app(API_TOKEN=None)
    assert open_app.test_client().get("/").status_code == 200
    with pytest.raises(InsecureBindError):
        serve(open_app, "0.0.0.0", 0)

    server = serve(make_app(), "0.0.0.0", 0)
    try:
        assert server.port > 0
    finally:
        server.close()
