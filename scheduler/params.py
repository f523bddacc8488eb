"""Typed params: a schedule's ``params_schema`` (JSON Schema), given or inferred from the
defaults, and the check every trigger and backfill passes through.

The trigger form renders its fields from the same schema (number, boolean, date, enum,
JSON), so the browser and the server check the same rules.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from scheduler.errors import InvalidParamsError, InvalidScheduleError

_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def infer_schema(params: dict[str, Any]) -> dict[str, Any]:
    """A schema from the defaults' types: each default's field takes values of its type."""
    return {
        "type": "object",
        "properties": {key: {**_type_of(value), "default": value} for key, value in params.items()},
    }


def _type_of(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        if _DATE.fullmatch(value):
            return {"type": "string", "format": "date"}
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        return {"type": "object"}
    return {}  # null: any JSON value


def schedule_schema(params: dict[str, Any], schema: Any) -> dict[str, Any]:
    """The schema a schedule's params are checked against: ``schema`` (checked, with the
    defaults filled in), or one inferred from ``params``. The defaults must match it."""
    if schema is None:
        return infer_schema(params)
    if not isinstance(schema, dict):
        raise InvalidScheduleError(
            f"params_schema must be a JSON Schema object, got {type(schema).__name__}"
        )
    try:
        json.dumps(schema, allow_nan=False)
        Draft202012Validator.check_schema(schema)
    except (TypeError, ValueError) as error:
        raise InvalidScheduleError(f"params_schema must be JSON: {error}") from None
    except SchemaError as error:
        message = f"params_schema is not a valid JSON Schema: {error.message}"
        raise InvalidScheduleError(message) from None
    if schema.get("type", "object") != "object":
        raise InvalidScheduleError("params_schema must describe an object (type: object)")
    properties = dict(schema.get("properties") or {})
    for key, value in params.items():
        field = properties.get(key)
        if isinstance(field, dict) and "default" not in field:
            properties[key] = {**field, "default": value}
    filled = {**schema, "type": "object", "properties": properties}
    try:
        validate_params(filled, params)
    except InvalidParamsError as error:
        message = f"The default params do not match params_schema: {error}"
        raise InvalidScheduleError(message) from None
    return filled


def validate_params(schema: dict[str, Any], params: Any) -> None:
    """Raise ``InvalidParamsError`` naming the first field that breaks ``schema``."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(params), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    error = errors[0]
    path = ".".join(str(part) for part in error.absolute_path)
    if not path and error.validator == "required":
        found = re.match(r"'([^']+)'", error.message)
        path = found.group(1) if found else ""
    where = f"Param {path!r}" if path else "Params"
    message = error.message if len(error.message) <= 200 else error.message[:199] + "…"
    raise InvalidParamsError(f"{where}: {message}")
