"""Fixtures shared by the test packages: one real local Ray, the store parametrised over
SQLite and PostgreSQL, a marks directory, and the scheduler's registry and services.

PostgreSQL: each session creates its own database (``gnomon_test_<pid>``) as the role in
``$GNOMON_TEST_PG`` (default ``postgresql://gnomon@127.0.0.1:5432/postgres``; `.ci/run`
creates the role) and drops it at the end.

Helpers that tasks call as well (``eventually``, ``mark``, ``count``) are in
``tests.waiting``, which Ray workers receive by value.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import ray
import sqlalchemy as sa

if TYPE_CHECKING:
    from scheduler.registry import Registry
    from scheduler.service import SchedulerService

PG_ADMIN_URL = os.environ.get(
    "GNOMON_TEST_PG", "postgresql+psycopg://gnomon@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray cluster on free ports (Redis holds 6379 here), started once."""
    context = ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@contextmanager
def _database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database called ``name``, dropped on exit; yields its URL."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable as {PG_ADMIN_URL}: {error.orig}")
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin.dispose()  # a fault test may have restarted the server under the pooled connection
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with _database(f"gnomon_test_{os.getpid()}") as url:
        yield url
        from executor.config import _handles

        for store, _ in list(_handles.values()):
            store.dispose()


@pytest.fixture
def scratch_postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, dropped after it (for tests that
    start whole ``gnomon up`` processes on an empty database)."""
    with _database(f"gnomon_scratch_{os.getpid()}_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'gnomon.db'}"


@pytest.fixture(scope="session")
def blob_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blobs")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test against both databases; both live for the whole session."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def workflow(ray_address: str, database_url: str, blob_root: Path):
    """``executor.workflow``, initialised on the parametrised database."""
    from executor import workflow as api

    api.init(database_url, storage=str(blob_root))
    return api


@pytest.fixture
def store(workflow, database_url: str):
    from executor.config import StoreConfig, handles

    return handles(StoreConfig.resolve(database_url, workflow._config.storage))[0]


@pytest.fixture
def workflow_id() -> str:
    """A unique id: the databases are shared by the whole session."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dags(tmp_path: Path) -> Path:
    """An empty dags folder."""
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """A directory where tasks leave marks (``tests.waiting.mark``), to count their runs."""
    path = tmp_path / "marks"
    path.mkdir()
    return path


class Clock:
    """A clock a test moves by hand: leases expire without waiting for them."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(store, clock) -> Iterator[Any]:
    """A second store on the same database whose leases run by ``clock``."""
    from executor.store import SqlStore

    opened = SqlStore.create(store.url, clock=clock)
    yield opened
    opened.dispose()


# ------------------------------------------------------------------- scheduler


@pytest.fixture
def registry() -> Registry:
    from scheduler.registry import Registry

    return Registry()


@pytest.fixture
def name() -> str:
    """A schedule name no other test uses (the databases live for the whole session)."""
    return f"s_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def services(workflow, database_url: str, blob_root: Path) -> Iterator[Callable[..., Any]]:
    """``services(registry, start=True, **options)`` makes a SchedulerService on the test
    database; each is stopped, and its schedules' jobs forgotten, when the test ends."""
    from scheduler.errors import ScheduleNotFoundError
    from scheduler.registry import Registry
    from scheduler.service import SchedulerService

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
            with suppress(ScheduleNotFoundError):
                cleaner.remove(schedule.name)
    cleaner.stop()


# --------------------------------------------------------------- notifications


@pytest.fixture
def webhook() -> Iterator[Any]:
    """A local HTTP server recording notifications (``tests.receivers.WebhookReceiver``)."""
    from tests.receivers import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def mail(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local SMTP server (aiosmtpd) that ``mailto:`` notifiers send to."""
    from tests.receivers import MailReceiver

    receiver = MailReceiver()
    monkeypatch.setenv("GNOMON_SMTP_URL", receiver.url)
    yield receiver
    receiver.close()


@pytest.fixture
def quick_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of failed deliveries after 0.2 s (doubling), sends that give up after 1 s."""
    from scheduler import delivery, notifiers

    monkeypatch.setattr(delivery, "BACKOFF", 0.2)
    monkeypatch.setattr(notifiers, "SEND_TIMEOUT", 1.0)


# ---------------------------------------------------------- running two at once


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n``: the tests that start a Ray cluster or ``gnomon up`` keep both
    cores busy as those start, and two of them at once slow each other past their
    deadlines; they run one at a time, on one worker, while the other runs the rest (the
    executor's crash tests included: a driver of their own is light enough)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here / "deploy") or (
            item.get_closest_marker("slow") and not item.path.is_relative_to(here / "executor")
        ):
            item.add_marker(pytest.mark.xdist_group("processes"))


# ------------------------------------------------------------------- reporting


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Captured output as valid UTF-8: the dags fuzz tests log undecodable file names
    (surrogate escapes), which ``pytest -n`` cannot send from its workers."""
    report = yield
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for title, text in report.sections
    ]
    return report
