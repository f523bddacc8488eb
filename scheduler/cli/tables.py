"""Output for people (aligned tables) and for programs (``--json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import click

from executor.store import TaskRecord, WorkflowRecord

#: Longest cell in a table; an error's first line is cut to this.
MAX_CELL = 60


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [list(headers), *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    text = text.strip().splitlines()[0] if text.strip() else "-"
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def timestamp(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(start: float | None, end: float | None) -> str | None:
    if start is None or end is None:
        return None
    seconds = max(end - start, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def workflows_table(records: Sequence[WorkflowRecord]) -> str:
    return render_table(
        ["ID", "NAME", "STATUS", "TRIGGER", "CREATED", "DURATION"],
        [
            [
                r.workflow_id,
                r.name,
                r.status.value,
                r.trigger,
                timestamp(r.created_at),
                duration(r.started_at, r.ended_at),
            ]
            for r in records
        ],
    )


def status_text(record: WorkflowRecord, tasks: Sequence[TaskRecord]) -> str:
    header = render_table(
        ["FIELD", "VALUE"],
        [
            ["id", record.workflow_id],
            ["name", record.name],
            ["status", record.status.value],
            ["trigger", record.trigger],
            ["created", timestamp(record.created_at)],
            ["started", timestamp(record.started_at)],
            ["ended", timestamp(record.ended_at)],
            ["duration", duration(record.started_at, record.ended_at)],
            ["output", record.output_preview],
            ["error", last_line(record.error)],
        ],
    ).split("\n", 1)[1]
    table = render_table(
        ["TASK", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "ERROR"],
        [
            [
                t.task_id,
                t.status.value,
                t.attempts,
                timestamp(t.started_at),
                duration(t.started_at, t.ended_at),
                last_line(t.error),
            ]
            for t in tasks
        ],
    )
    return f"{header}\n\n{table}"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=repr))


def format_value(value: Any) -> str:
    """A workflow output for the terminal: text as is, JSON when it is JSON, else repr."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2)
    except (TypeError, ValueError):
        return repr(value)
