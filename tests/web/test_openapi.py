"""The OpenAPI description in ``web/openapi.yaml`` names exactly the routes Flask serves."""

from __future__ import annotations

import re

import pytest
import yaml
from flask import Flask

from tests.web.conftest import BEARER
from web.api import OPENAPI_FILE

METHODS = {"get", "post", "put", "patch", "delete"}
#: Routes outside ``/api/v1`` that the description covers too.
OPS_ROUTES = {"/healthz", "/metrics"}


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The routes do not depend on the database: one is enough here."""
    return request.getfixturevalue(f"{request.param}_url")


def _spec() -> dict:
    return yaml.safe_load(OPENAPI_FILE.read_text())


def _served(app: Flask) -> set[tuple[str, str]]:
    """(METHOD, path) of every API route, with ``<path:workflow_id>`` as ``{workflow_id}``."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/v1/") or rule.rule in OPS_ROUTES):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, path))
    return found


def _described() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in _spec()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_description_names_exactly_the_served_routes(make_app) -> None:
    served = _served(make_app())

    assert len(served) >= 13
    assert served - _described() == set(), "served but not described in web/openapi.yaml"
    assert _described() - served == set(), "described in web/openapi.yaml but not served"


def test_every_operation_declares_its_errors_and_path_parameters() -> None:
    spec = _spec()
    for path, item in spec["paths"].items():
        declared = {
            parameter.get("name") or parameter["$ref"].rsplit("/", 1)[-1]
            for parameter in item.get("parameters", [])
        }
        names = {
            "WorkflowId": "workflow_id",
            "ScheduleName": "name",
            "PoolName": "name",
            "BackfillId": "backfill_id",
        }
        declared = {names.get(name, name) for name in declared}
        assert declared == set(re.findall(r"{([^}]+)}", path)), path
        for method, operation in item.items():
            if method not in METHODS:
                continue
            statuses = set(operation["responses"])
            assert any(status.startswith("2") for status in statuses), (method, path)
            public = operation.get("security") == []
            assert public or "401" in statuses, f"{method} {path} does not declare 401"


def test_the_description_is_served_without_a_token(make_app) -> None:
    client = make_app().test_client()

    response = client.get("/api/v1/openapi.yaml")

    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert yaml.safe_load(response.data) == _spec()
    assert _spec()["openapi"].startswith("3.0")
    assert client.get("/api/v1/workflows").status_code == 401  # the rest still needs one
    assert client.get("/api/v1/workflows", headers=BEARER).status_code == 200
