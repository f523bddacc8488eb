"""When a schedule fires: cron (in a time zone), a fixed interval, one date, or never.

A ``TriggerSpec`` is the schedule's declared trigger as plain data. It is stored with the
APScheduler job, so a restart can tell whether the code changed the trigger, and it
builds the APScheduler trigger that computes the fire times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.errors import InvalidScheduleError

#: Interval ticks are aligned to this instant, so every replica and every restart computes
#: the same logical dates (``interval=60`` fires on the minute).
INTERVAL_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The longest interval: about 1,000 years, far inside what ``timedelta`` can hold.
MAX_INTERVAL_SECONDS = 1000 * 366 * 86400.0


class WallClockCronTrigger(CronTrigger):
    """A cron trigger that fires a fixed wall-clock time once on the day clocks go back.

    APScheduler 3 fires ``30 2 * * *`` in Europe/Berlin twice on the autumn DST change
    (02:30 CEST, then 02:30 CET). Like Vixie cron, a job whose hour field is not ``*``
    runs once; an hourly job still fires every real hour.
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire = super().get_next_fire_time(previous_fire_time, now)
        if fire is None or previous_fire_time is None or self._every_hour():
            return fire
        if _wall_clock(fire) == _wall_clock(previous_fire_time.astimezone(fire.tzinfo)):
            return super().get_next_fire_time(fire, fire)
        return fire

    def _every_hour(self) -> bool:
        return any(field.name == "hour" and str(field) == "*" for field in self.fields)


def _wall_clock(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, fold=0)


class NeverTrigger(BaseTrigger):
    """A trigger-only schedule: runs start by hand (CLI, API, dashboard), never by time."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return None

    def __str__(self) -> str:
        return "manual"


@dataclass(frozen=True)
class TriggerSpec:
    """One of: ``cron`` (with ``timezone``), ``interval`` seconds, ``at`` a date, or none."""

    kind: str
    cron: str | None = None
    timezone: str = "UTC"
    interval: float | None = None
    at: datetime | None = None

    @staticmethod
    def parse(
        cron: str | None = None,
        interval: float | timedelta | None = None,
        at: datetime | None = None,
        timezone: str = "UTC",
    ) -> TriggerSpec:
        """Validate a schedule's trigger options; raises ``InvalidScheduleError``."""
        given = [
            name
            for name, value in (("cron", cron), ("interval", interval), ("at", at))
            if value is not None
        ]
        if len(given) > 1:
            raise InvalidScheduleError(f"Give one of cron=, interval= or at=, not {given}")
        zone = _zone(timezone)
        if cron is not None:
            spec = TriggerSpec("cron", cron=" ".join(str(cron).split()), timezone=timezone)
            spec.build()  # validates the expression
            return spec
        if interval is not None:
            seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
            number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            # NaN, infinity and spans past timedelta's range would only fail when the
            # service builds the trigger, taking the whole scheduler down with them.
            if not number or not 0 < seconds <= MAX_INTERVAL_SECONDS:
                raise InvalidScheduleError(
                    f"interval must be a positive number of seconds (at most "
                    f"{MAX_INTERVAL_SECONDS:.0f}) or a timedelta, got {interval!r}"
                )
            return TriggerSpec("interval", interval=float(seconds), timezone=timezone)
        if at is not None:
            if not isinstance(at, datetime):
                raise InvalidScheduleError(f"at must be a datetime, got {type(at).__name__}")
            if at.tzinfo is None:
                at = at.replace(tzinfo=zone)
            return TriggerSpec("date", at=at.astimezone(_UTC), timezone=timezone)
        return TriggerSpec("none", timezone=timezone)

    def build(self) -> BaseTrigger:
        if self.kind == "cron":
            assert self.cron is not None
            try:
                return WallClockCronTrigger.from_crontab(
                    _crontab_weekdays(self.cron), timezone=_zone(self.timezone)
                )
            except ValueError as error:
                raise InvalidScheduleError(f"Bad cron expression {self.cron!r}: {error}") from None
        if self.kind == "interval":
            assert self.interval is not None
            return IntervalTrigger(seconds=self.interval, start_date=INTERVAL_EPOCH, timezone=_UTC)
        if self.kind == "date":
            return DateTrigger(run_date=self.at, timezone=_UTC)
        return NeverTrigger()

    def describe(self) -> str:
        """A short human form: ``cron 0 3 * * * (UTC)``, ``every 60s``, ``at ...``, ``manual``."""
        if self.kind == "cron":
            return f"cron {self.cron} ({self.timezone})"
        if self.kind == "interval":
            assert self.interval is not None
            value = int(self.interval) if self.interval.is_integer() else self.interval
            return f"every {value}s"
        if self.kind == "date":
            assert self.at is not None
            return f"at {self.at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        return "manual"

    def as_state(self) -> dict[str, Any]:
        """Plain data for the job store (compared on restart to spot a changed trigger)."""
        state = asdict(self)
        state["at"] = self.at.isoformat() if self.at else None
        return state


def fire_times(
    trigger: BaseTrigger, after: datetime, until: datetime, limit: int = 10_000
) -> list[datetime]:
    """The fire times in ``(after, until]``, as APScheduler computes them."""
    times: list[datetime] = []
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while fire is not None and fire <= until and len(times) < limit:
        times.append(fire)
        # Step in UTC: local arithmetic drops ``fold`` and lands an hour early at DST's end.
        fire = trigger.get_next_fire_time(fire, fire.astimezone(_UTC) + timedelta(microseconds=1))
    return times


_UTC = timezone.utc


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidScheduleError(f"Unknown time zone {name!r}") from None


_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _crontab_weekdays(expression: str) -> str:
    """Rewrite the day-of-week field in crontab's numbering (0 or 7 = Sunday) as names.

    APScheduler 3 counts 0 as Monday, so ``0 9 * * 1`` would fire on Tuesday; names mean
    the same to both. Numeric ranges and steps are expanded into lists of names.
    """
    fields = expression.split()
    if len(fields) != 5:
        return expression
    days: list[str] = []
    for item in fields[4].split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if base == "*" and not step_text:
            return expression
        if base == "*":
            low, high = 0, 6
        elif "-" in base and all(part.isdigit() for part in base.split("-", 1)):
            low, high = (int(part) for part in base.split("-", 1))
        elif base.isdigit():
            low = high = int(base)
        else:
            days.append(item)  # names (mon-fri) already mean the same to both
            continue
        if not (0 <= low <= 7 and 0 <= high <= 7):
            return expression  # out of range: let APScheduler report it
        days.extend(_DAY_NAMES[day] for day in range(low, high + 1, step))
    fields[4] = ",".join(dict.fromkeys(days))
    return " ".join(fields)
