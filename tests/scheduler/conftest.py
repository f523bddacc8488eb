"""Scheduler fixtures: a fresh registry, unique schedule names, and services on the test
database that are stopped, and whose jobs are forgotten, when the test ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.errors import ScheduleNotFoundError
from scheduler.registry import Registry
from scheduler.service import SchedulerService


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def name() -> str:
    """A schedule name no other test uses (the databases live for the whole session)."""
    return f"s_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def services(workflow, database_url: str, blob_root: Path) -> Iterator[Callable[..., Any]]:
    """``services(registry, start=True, **options)`` makes a SchedulerService."""
    made: list[SchedulerService] = []

    def make(registry: Registry, *, start: bool = True, **options: Any) -> SchedulerService:
        options.setdefault("poll_interval", 0.2)
        service = SchedulerService(registry, database_url, storage=str(blob_root), **options)
        made.append(service)
        return service.start() if start else service.open()

    yield make
    for service in made:
        service.stop()
    cleaner = SchedulerService(Registry(), database_url, storage=str(blob_root)).open()
    for service in made:
        for schedule in service.registry:
            try:
                cleaner.remove(schedule.name)
            except ScheduleNotFoundError:
                pass
    cleaner.stop()


@pytest.fixture(scope="session", autouse=True)
def _marks_by_value() -> None:
    """Tasks defined in these tests call ``waiting.mark``; ship it by value to the workers."""
    from ray import cloudpickle

    from tests.scheduler import waiting

    cloudpickle.register_pickle_by_value(waiting)
