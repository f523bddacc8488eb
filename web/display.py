"""How values read on the pages: times, durations, triggers, schedules in words.

Registered as Jinja filters by ``init_app``; the JSON API uses ``iso`` for its times.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from flask import Flask

from executor.store.records import iso
from web.graph import task_label

#: How a run's ``trigger`` column reads.
TRIGGER_LABELS = {"schedule": "schedule", "manual": "manual", "api": "API"}

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_DAY_NAMES = {name[:3].lower(): i for i, name in enumerate(_DAYS)}


def when(timestamp: float | datetime | None) -> str:
    """``2026-11-25 03:00:12 UTC``."""
    if timestamp is None:
        return "—"
    if not isinstance(timestamp, datetime):
        timestamp = datetime.fromtimestamp(timestamp, timezone.utc)
    return timestamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(timestamp: float | None) -> str:
    """``22:53:28``: the time of day in UTC, for rows that share a date."""
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M:%S")


def seconds_text(seconds: float) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 05 s``, ``2 h 03 min``, ``3 d 4 h``."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def duration(started: float | None, ended: float | None, now: float | None = None) -> str:
    """How long it ran; still counting while it runs."""
    if started is None:
        return "—"
    return seconds_text((ended if ended is not None else (now or time.time())) - started)


def relative(timestamp: float | datetime | None, now: float | None = None) -> str:
    """``3 min ago`` or ``in 2 h 00 min``."""
    if timestamp is None:
        return ""
    if isinstance(timestamp, datetime):
        timestamp = timestamp.timestamp()
    delta = timestamp - (now or time.time())
    if abs(delta) < 1:
        return "now"
    text = seconds_text(abs(delta)).split(" ", 2)
    short = " ".join(text[:2])
    return f"in {short}" if delta > 0 else f"{short} ago"


def trigger_label(trigger: str) -> str:
    return TRIGGER_LABELS.get(trigger, trigger)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def first_line(text: str | None) -> str:
    """The line of an error that says what happened (a traceback's last line)."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def schedule_words(trigger: str) -> str:
    """A trigger as the scheduler describes it, in words: ``every day at 03:00 UTC``.

    Understands ``cron M H DOM MON DOW (TZ)`` for the common shapes, ``every Ns``,
    ``at <date>`` and ``manual``; anything else is shown as given.
    """
    match = re.fullmatch(r"cron (\S+) (\S+) (\S+) (\S+) (\S+) \((.+)\)", trigger)
    if match:
        return _cron_words(*match.groups()) or trigger
    match = re.fullmatch(r"every ([\d.]+)s", trigger)
    if match:
        return _interval_words(float(match.group(1)))
    match = re.fullmatch(r"at (\d{4}-\d\d-\d\d)T(\d\d:\d\d):\d\dZ", trigger)
    if match:
        return f"once, on {match.group(1)} at {match.group(2)} UTC"
    if trigger == "manual":
        return "on demand only (no timer)"
    return trigger


def _interval_words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {seconds:g} seconds"


def _cron_words(minute: str, hour: str, day: str, month: str, weekday: str, zone: str) -> str:
    if month != "*":
        return ""
    if hour == "*" and day == "*" and weekday == "*":
        if minute == "*":
            return "every minute"
        step = re.fullmatch(r"\*/(\d+)", minute)
        if step:
            return f"every {step.group(1)} minutes"
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}"
        return ""
    step = re.fullmatch(r"\*/(\d+)", hour)
    if step and minute.isdigit() and day == "*" and weekday == "*":
        return f"every {step.group(1)} hours at :{int(minute):02d}"
    if not (minute.isdigit() and hour.isdigit()):
        return ""
    at = f"at {int(hour):02d}:{int(minute):02d} {zone}"
    if day == "*" and weekday == "*":
        return f"every day {at}"
    if day == "*":
        days = _weekdays(weekday)
        return f"every {days} {at}" if days else ""
    if weekday == "*" and day.isdigit():
        return f"on day {int(day)} of every month {at}"
    return ""


def _weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 is Sunday, or names): ``Monday``, ``Monday to Friday``."""

    def day(text: str) -> int | None:
        if text.isdigit() and int(text) <= 7:
            return int(text) % 7
        return _DAY_NAMES.get(text.lower())

    span = field.split("-")
    if len(span) == 2:
        first, last = day(span[0]), day(span[1])
        if first is None or last is None:
            return ""
        if (first, last) == (1, 5):
            return "weekday (Monday to Friday)"
        return f"{_DAYS[first]} to {_DAYS[last]}"
    days = [day(part) for part in field.split(",")]
    if any(d is None for d in days):
        return ""
    return " and ".join(_DAYS[d] for d in days if d is not None)


def init_app(app: Flask) -> None:
    app.add_template_filter(task_label)
    app.add_template_filter(clock)
    app.add_template_filter(when)
    app.add_template_filter(duration)
    app.add_template_filter(relative)
    app.add_template_filter(iso)
    app.add_template_filter(trigger_label)
    app.add_template_filter(pretty_json)
    app.add_template_filter(first_line)
    app.add_template_filter(schedule_words)
    app.add_template_filter(seconds_text)
