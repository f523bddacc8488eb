"""How values read: schedules in words and durations."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from executor.store.records import iso
from scheduler.registry import format_logical_date
from web.display import schedule_words, seconds_text


@pytest.mark.parametrize(
    ("trigger", "words"),
    [
        ("cron 0 3 * * * (UTC)", "every day at 03:00 UTC"),
        ("cron 30 2 * * * (Europe/Berlin)", "every day at 02:30 Europe/Berlin"),
        ("cron 0 9 * * 1-5 (UTC)", "every weekday (Monday to Friday) at 09:00 UTC"),
        ("cron 0 9 * * 1 (UTC)", "every Monday at 09:00 UTC"),
        ("cron 0 9 * * 0 (UTC)", "every Sunday at 09:00 UTC"),
        ("cron 0 9 * * sat,sun (UTC)", "every Saturday and Sunday at 09:00 UTC"),
        ("cron 15 6 1 * * (UTC)", "on day 1 of every month at 06:15 UTC"),
        ("cron */5 * * * * (UTC)", "every 5 minutes"),
        ("cron * * * * * (UTC)", "every minute"),
        ("cron 7 * * * * (UTC)", "every hour at :07"),
        ("cron 0 */6 * * * (UTC)", "every 6 hours at :00"),
        ("cron 0 3 1 1 * (UTC)", "cron 0 3 1 1 * (UTC)"),
        ("every 60s", "every minute"),
        ("every 3600s", "every hour"),
        ("every 86400s", "every day"),
        ("every 300s", "every 5 minutes"),
        ("every 90s", "every 90 seconds"),
        ("every 0.5s", "every 0.5 seconds"),
        ("at 2026-12-01T03:00:00Z", "once, on 2026-12-01 at 03:00 UTC"),
        ("manual", "on demand only (no timer)"),
        ("something new", "something new"),
    ],
)
def test_schedule_in_words(trigger: str, words: str) -> None:
    assert schedule_words(trigger) == words


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250 ms"),
        (4.21, "4.2 s"),
        (185, "3 min 05 s"),
        (7380, "2 h 03 min"),
        (270000, "3 d 3 h"),
    ],
)
def test_durations_read_in_the_largest_sensible_unit(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc),
        datetime(2026, 11, 25, 3, 0, 0, 120000, tzinfo=timezone.utc),
        datetime(2026, 3, 29, 4, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    ],
)
def test_api_times_read_like_logical_dates(moment: datetime) -> None:
    assert iso(moment) == format_logical_date(moment)
    assert iso(moment.timestamp()) == format_logical_date(moment)
