"""Schemathesis fuzzes the REST API against ``web/openapi.yaml``: the real app, Ray,
SQLite and PostgreSQL, with the token. Generated requests, valid and invalid, must never
get a 5xx, and every response must be one the description allows (status, content type,
body schema, headers). Half the generated ids and names are replaced by ones that exist,
so the handlers past the 404 are fuzzed too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
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
