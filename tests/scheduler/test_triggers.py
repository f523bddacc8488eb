"""Triggers and registration: the fire times APScheduler computes, and what we refuse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import scheduler
from scheduler.errors import DuplicateScheduleError, InvalidScheduleError
from scheduler.registry import Registry, format_logical_date, parse_logical_date, run_id
from scheduler.triggers import TriggerSpec, fire_times

UTC = timezone.utc


def _utc(times: list[datetime]) -> list[str]:
    return [format_logical_date(moment) for moment in times]


def test_cron_in_new_york_keeps_local_time_across_spring_forward():
    trigger = TriggerSpec.parse(cron="0 3 * * *", timezone="America/New_York").build()
    times = fire_times(trigger, datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    # 03:00 EST is 08:00Z; from 8 March (EDT) 03:00 is 07:00Z.
    assert _utc(times) == [
        "2026-03-06T08:00:00Z",
        "2026-03-07T08:00:00Z",
        "2026-03-08T07:00:00Z",
        "2026-03-09T07:00:00Z",
    ]


def test_daily_cron_fires_once_on_the_night_clocks_go_back():
    trigger = TriggerSpec.parse(cron="30 2 * * *", timezone="Europe/Berlin").build()
    times = fire_times(
        trigger, datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)
    )
    # 02:30 happens twice on 25 October (CEST, then CET); a nightly job runs once.
    assert _utc(times) == [
        "2026-10-23T00:30:00Z",
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]


def test_hourly_cron_fires_every_real_hour_when_clocks_go_back():
    trigger = TriggerSpec.parse(cron="30 * * * *", timezone="Europe/Berlin").build()
    times = fire_times(
        trigger, datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 3, tzinfo=UTC)
    )
    assert _utc(times) == [
        "2026-10-24T23:30:00Z",
        "2026-10-25T00:30:00Z",  # 02:30 CEST
        "2026-10-25T01:30:00Z",  # 02:30 CET, the repeated hour
        "2026-10-25T02:30:00Z",
    ]


def test_daily_cron_on_the_night_clocks_go_forward_still_fires():
    trigger = TriggerSpec.parse(cron="30 2 * * *", timezone="Europe/Berlin").build()
    times = fire_times(
        trigger, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    )
    # 02:30 does not exist on 29 March; the run happens once that day anyway.
    assert [moment.date().isoformat() for moment in times] == [
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
    ]


def test_interval_ticks_align_to_the_epoch():
    trigger = TriggerSpec.parse(interval=timedelta(minutes=15)).build()
    start = datetime(2026, 5, 1, 10, 7, 13, 500, tzinfo=UTC)
    times = fire_times(trigger, start, start + timedelta(hours=1))
    assert _utc(times) == [
        "2026-05-01T10:15:00Z",
        "2026-05-01T10:30:00Z",
        "2026-05-01T10:45:00Z",
        "2026-05-01T11:00:00Z",
    ]


def test_one_off_fires_once_and_naive_dates_use_the_time_zone():
    spec = TriggerSpec.parse(at=datetime(2026, 7, 1, 9, 0), timezone="Asia/Tokyo")
    assert spec.describe() == "at 2026-07-01T00:00:00Z"
    times = fire_times(
        spec.build(), datetime(2026, 6, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert _utc(times) == ["2026-07-01T00:00:00Z"]


def test_trigger_only_schedules_never_fire():
    spec = TriggerSpec.parse()
    assert spec.kind == "none"
    assert spec.describe() == "manual"
    assert (
        fire_times(spec.build(), datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
        == []
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "Bad cron expression '61 * * * *'"),
        ({"cron": "* * *"}, "Wrong number of fields"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
        ({"interval": 0}, "interval must be a positive number"),
        ({"interval": "5"}, "interval must be a positive number"),
        ({"cron": "* * * * *", "interval": 5}, "Give one of cron=, interval= or at="),
        ({"at": "tomorrow"}, "at must be a datetime"),
    ],
)
def test_bad_triggers_are_refused_in_one_line(options, message):
    with pytest.raises(InvalidScheduleError) as caught:
        TriggerSpec.parse(**options)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_run_ids_are_the_name_at_the_logical_date_in_utc():
    berlin = datetime(2026, 11, 25, 4, 0, tzinfo=timezone(timedelta(hours=1)))
    assert run_id("nightly", berlin) == "nightly@2026-11-25T03:00:00Z"
    precise = datetime(2026, 11, 25, 3, 0, 0, 250000, tzinfo=UTC)
    assert run_id("nightly", precise) == "nightly@2026-11-25T03:00:00.250000Z"
    assert parse_logical_date("2026-11-25T03:00:00.250000Z") == precise


def test_register_records_options_and_merges_params():
    registry = Registry()

    @registry.register(
        interval=60,
        params={"region": "eu", "limit": 10},
        max_active_runs=3,
        catchup=True,
        metadata={"team": "data"},
    )
    def report(run):
        return run

    schedule = registry.get("report")
    assert report.gnomon_schedule is schedule
    assert (schedule.catchup, schedule.max_active_runs, schedule.metadata) == (
        True,
        3,
        {"team": "data"},
    )
    run = schedule.make_run(datetime(2026, 1, 1, tzinfo=UTC), {"limit": 99}, trigger="manual")
    assert run.params == {"region": "eu", "limit": 99}
    assert run.workflow_id == "report@2026-01-01T00:00:00Z"
    assert schedule.params == {"region": "eu", "limit": 10}


def test_module_level_register_goes_to_the_collecting_registry():
    collected = Registry()
    with collected.collecting():

        @scheduler.register(name="collected_one")
        def factory(run):
            return run

    assert collected.names() == ["collected_one"]
    assert "collected_one" not in scheduler.REGISTRY


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "a@b"}, "cannot contain '@'"),
        ({"name": "x" * 101}, "1 to 100 characters"),
        ({"params": {"when": datetime.now()}}, "params must be JSON-serializable"),
        ({"params": ["not", "a", "dict"]}, "params must be a dict"),
        ({"max_active_runs": 0}, "max_active_runs must be an integer >= 1"),
    ],
)
def test_bad_registrations_are_refused(options, message):
    with pytest.raises(InvalidScheduleError, match=message.replace("(", r"\(")):
        Registry().register(lambda run: run, **options)


def test_two_factories_cannot_share_a_name():
    registry = Registry()
    registry.register(lambda run: 1, name="shared")
    with pytest.raises(DuplicateScheduleError, match="registered twice"):

        @registry.register(name="shared")
        def other(run):
            return 2


@pytest.mark.parametrize(
    ("day_field", "weekdays"),
    [
        ("1", {"Monday"}),
        ("0", {"Sunday"}),
        ("7", {"Sunday"}),
        ("1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("0,6", {"Saturday", "Sunday"}),
        ("mon", {"Monday"}),
    ],
)
def test_cron_weekdays_use_crontab_numbering(day_field, weekdays):
    # APScheduler 3 alone counts 0 as Monday; crontab (and Airflow) count 0 as Sunday.
    trigger = TriggerSpec.parse(cron=f"0 9 * * {day_field}", timezone="UTC").build()
    times = fire_times(
        trigger, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC)
    )
    assert {t.strftime("%A") for t in times} == weekdays
