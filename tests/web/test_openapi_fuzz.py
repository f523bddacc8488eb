"""Fuzzing the REST API: the real app, Ray, SQLite and PostgreSQL, with the token.

Schemathesis generates requests, valid and invalid, from ``web/openapi.yaml``: none may
get a 5xx, and every response must be one the description allows (status, content type,
body schema, headers). Half the generated ids and names are swapped for ones that exist,
so the handlers past the 404 are fuzzed too. Below the description, known-nasty values
and hypothesis text (NUL and control characters, which schemathesis leaves out) go into
every route's path, query and body."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from executor.status import WorkflowStatus
from scheduler.registry import Registry
from tests.web import flows
from tests.web.conftest import BEARER, seed
from web import actions
from web.api import OPENAPI_FILE

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]


def _registry(prefix: str) -> Registry:
    registry = Registry()

    @registry.register(name=f"{prefix}_ok", params={"text": "default"})
    def ok(run):
        return flows.source.bind(str(run.params.get("text")))

    @registry.register(name=f"{prefix}_raises", cron="0 3 * * *")
    def raises(run):
        raise ValueError("the factory says no")

    return registry


#: What exists in the database of the running test, for the path parameter hook.
KNOWN: dict[str, list[str]] = {"workflow_id": [], "name": []}


class CurrentApp:
    """The WSGI app of the running test. Schemathesis binds operations to an app when it
    collects them, before a fixture has made one (and its fixture-based loader does not
    run on pytest 9), so it is given this stand-in."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "only the fuzz_app fixture's app answers"
        return self.app(environ, start_response)


CURRENT = CurrentApp()
#: Built from the file (the test below checks the app serves the same).
schema = schemathesis.openapi.from_path(OPENAPI_FILE)
schema.app = CURRENT


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Keep the generated parameters, or swap in an id or a name that exists."""
    if not path_parameters:
        return st.just(path_parameters)
    known = {
        key: st.sampled_from(KNOWN[key]) if KNOWN.get(key) else st.just(value)
        for key, value in path_parameters.items()
    }
    return st.one_of(st.just(path_parameters), st.fixed_dictionaries(known))


@pytest.fixture
def fuzz_app(make_app, services, store, workflow, monkeypatch) -> Iterator[Flask]:
    """The app on runs in every status (ids with '/' and '@' too) and a scheduler with a
    trigger-only schedule and one whose factory raises."""
    monkeypatch.setattr(actions, "PICKUP_SECONDS", 0.2)  # Resume's wait, per request
    prefix = f"fuzz_{uuid.uuid4().hex[:8]}"
    workflow_ids = []
    for status in set(WorkflowStatus) - {WorkflowStatus.RESUMABLE}:  # recovery would take it
        for suffix in ("", "/nested@2026-01-01T00:00:00Z"):
            workflow_id = f"{prefix}-{status.value.lower()}{suffix}"
            seed(store, workflow_id, status, workflow_name=prefix, metadata={"n": 1})
            workflow_ids.append(workflow_id)
    KNOWN.update(workflow_id=workflow_ids, name=[f"{prefix}_ok", f"{prefix}_raises"])
    CURRENT.app = make_app(SCHEDULER=services(_registry(prefix)))
    yield CURRENT.app
    CURRENT.app = None
    KNOWN.update(workflow_id=[], name=[])


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_described(case, fuzz_app) -> None:
    case.call_and_validate(headers=BEARER, checks=CHECKS)


def test_the_app_serves_the_file_that_is_fuzzed(make_app, workflow) -> None:
    served = make_app().test_client().get("/api/v1/openapi.yaml")
    assert served.data == OPENAPI_FILE.read_bytes()


#: Text without lone surrogates (a URL cannot carry them), rich in NUL, control and URL
#: characters: schemathesis leaves NUL and controls out of the parameters it generates.
_TEXT = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from("\x00\x01\n/%.?#&=\\")),
    min_size=1,
    max_size=40,
)
#: Values that broke the API before (NUL on PostgreSQL, digits int() refuses, JSON nested
#: too deep) and others that routing, quoting or parsing could trip on.
NASTY = ["\x00", "a\x00b", "²", "1" * 5000, "-1", "1e999", "[" * 5000, "NaN"]
NASTY += [".", "..", "/", "a/b", " ", "\ufffd", "%", "%00", "%2F", "x" * 3000]
_VALUE = st.one_of(_TEXT, st.sampled_from(NASTY))


def _api_rules(app: Flask) -> list[Any]:
    return sorted((r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")), key=str)


def _fill(rule: Any, values: dict[str, str]) -> str:
    path = rule.rule
    for argument, value in values.items():
        path = re.sub(rf"<(?:\w+:)?{argument}>", quote(value, safe=""), path)
    return path


def _no_server_error(response: Any, *request: object) -> None:
    assert response.status_code < 500, (*request, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json or {}) == {"error"}, (*request, response.text[:300])


def test_nasty_values_in_every_route_and_parameter(fuzz_app) -> None:
    """Each value of ``NASTY`` in each path parameter, query parameter and body."""
    client = fuzz_app.test_client()
    for rule in _api_rules(fuzz_app):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for value in NASTY:
                path = _fill(rule, {argument: value for argument in rule.arguments})
                response = client.open(path, method=method, data=value, headers=BEARER)
                _no_server_error(response, method, path, value[:50])
    for parameter in ["status", "name", "limit", "cursor"]:
        for value in NASTY:
            query = {parameter: value}
            response = client.get("/api/v1/workflows", query_string=query, headers=BEARER)
            _no_server_error(response, parameter, value[:50])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking would take minutes
)
@given(data=st.data())
def test_raw_text_in_any_route_never_gets_a_5xx(fuzz_app, data) -> None:
    """Below the description: any text in an API route's path and query, any bytes as
    its body. Every answer is below 500, and every error is ``{"error": "..."}``."""
    rule = data.draw(st.sampled_from(_api_rules(fuzz_app)))
    method = data.draw(st.sampled_from(sorted(rule.methods - {"HEAD", "OPTIONS"})))
    values = {}
    for argument in rule.arguments:
        known = KNOWN["name" if argument == "name" else "workflow_id"]
        values[argument] = data.draw(st.one_of(_VALUE, st.sampled_from(known)))
    path = _fill(rule, values)
    parameters = st.sampled_from(["status", "name", "limit", "cursor"])
    query = data.draw(st.dictionaries(parameters, _VALUE))
    body = data.draw(st.one_of(st.none(), st.binary(max_size=300), _VALUE.map(str.encode)))

    response = fuzz_app.test_client().open(
        path, method=method, query_string=query, data=body, headers=BEARER
    )

    _no_server_error(response, method, path, query, body)
