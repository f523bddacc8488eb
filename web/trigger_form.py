"""The trigger form's typed fields, from a schedule's ``params_schema``: number, boolean,
date, enum and JSON fields with their descriptions and defaults, checked in the browser
(``params-form.js``, HTML constraints) and again here and by the schema.

A field is named ``param.<key>``; the form's "more params" JSON is merged over them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from executor.store import SqlStore
from web.errors import BadRequest

#: Field names in the form: ``param.<key>``.
PREFIX = "param."
#: How many of a schedule's recent param sets the form offers.
RECENT = 5


@dataclass(frozen=True)
class Field:
    key: str
    #: ``integer``, ``number``, ``boolean``, ``date``, ``enum``, ``text`` or ``json``.
    kind: str
    description: str
    #: The default as the input shows it (JSON text for ``json`` and ``enum``).
    value: str
    required: bool
    options: tuple[tuple[str, str], ...] = ()
    minimum: Any = None
    maximum: Any = None
    pattern: str | None = None

    @property
    def name(self) -> str:
        return PREFIX + self.key


def fields(schema: dict[str, Any]) -> list[Field]:
    """The form's fields, in the schema's order."""
    required = set(schema.get("required") or [])
    found = []
    for key, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = _kind(spec)
        default = spec.get("default")
        if kind in ("json", "enum"):
            value = "" if "default" not in spec else json.dumps(default)
        elif kind == "boolean":
            value = "true" if default is True else "false"
        else:
            value = "" if default is None else str(default)
        found.append(
            Field(
                key=key,
                kind=kind,
                description=str(spec.get("description") or spec.get("title") or ""),
                value=value,
                required=key in required,
                options=tuple((json.dumps(o), str(o)) for o in spec.get("enum") or ()),
                minimum=spec.get("minimum"),
                maximum=spec.get("maximum"),
                pattern=spec.get("pattern") if isinstance(spec.get("pattern"), str) else None,
            )
        )
    return found


def _kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "enum"
    kind = spec.get("type")
    if kind in ("integer", "number", "boolean"):
        return str(kind)
    if kind == "string":
        return "date" if spec.get("format") == "date" else "text"
    return "json"


def params_from(form: MultiDict[str, str], schema: dict[str, Any]) -> dict[str, Any]:
    """The params a submitted form holds: its typed fields, then its JSON over them; a
    value that does not parse as its field's type is a 400 naming the field."""
    params: dict[str, Any] = {}
    for field in fields(schema):
        values = form.getlist(field.name)
        if not values:
            continue
        text = values[-1].strip()  # a checkbox sends its hidden "false", then "true"
        if text == "" and field.kind not in ("text", "boolean"):
            continue  # left empty: the default holds
        params[field.key] = _parse(field, text)
    return params


def _parse(field: Field, text: str) -> Any:
    try:
        if field.kind == "integer":
            return int(text)
        if field.kind == "number":
            number = float(text)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(text)
            return number
        if field.kind == "boolean":
            return text == "true"
        if field.kind in ("json", "enum"):
            return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        what = {"integer": "an integer", "number": "a number"}.get(field.kind, "JSON")
        raise BadRequest(f"Param {field.key!r}: {text[:80]!r} is not {what}") from None
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def recent(store: SqlStore, name: str) -> list[dict[str, Any]]:
    """The last ``RECENT`` distinct param sets the schedule's runs used, newest first."""
    seen: dict[str, dict[str, Any]] = {}
    for record in store.list_workflows(name=name, limit=100):
        params = record.user_metadata.get("params")
        if isinstance(params, dict):
            seen.setdefault(json.dumps(params, sort_keys=True), params)
        if len(seen) >= RECENT:
            break
    return list(seen.values())
