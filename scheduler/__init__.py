"""Gnomon's scheduler: registered workflows on cron, interval and date triggers.

import scheduler

@scheduler.register(cron="0 3 * * *", timezone="UTC")
def nightly_etl(run):
    return load.bind(transform.bind(extract.bind(run.logical_date.date().isoformat())))
"""

from scheduler.errors import (
    DuplicateScheduleError,
    InvalidScheduleError,
    ScheduleNotFoundError,
    SchedulerError,
)
from scheduler.registry import REGISTRY, Registry, Run, Schedule, register, run_id

__all__ = [
    "REGISTRY",
    "DuplicateScheduleError",
    "InvalidScheduleError",
    "Registry",
    "Run",
    "Schedule",
    "ScheduleNotFoundError",
    "SchedulerError",
    "SchedulerService",
    "register",
    "run_id",
]


def __getattr__(name: str):
    # The service pulls in APScheduler and Ray; dags files need only ``register``.
    if name == "SchedulerService":
        from scheduler.service import SchedulerService

        return SchedulerService
    raise AttributeError(name)
