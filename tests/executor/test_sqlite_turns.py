"""SQLite's writers in line for the write lock (``sqlite.WriterTurns``): a write waits
for the writer before it in the kernel's queue, and a write begun inside another on the
same thread does not wait for itself."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

from executor.config import StoreConfig, handles
from executor.store.sqlite import SqliteStore

COUNTER = "turns_test"


@pytest.fixture
def sqlite_store(ray_address: str, sqlite_url: str, blob_root) -> SqliteStore:
    from executor import workflow as api

    api.init(sqlite_url, storage=str(blob_root))
    store = handles(StoreConfig.resolve(sqlite_url, str(blob_root)))[0]
    assert isinstance(store, SqliteStore)
    return store


@contextmanager
def _line_held(url: str) -> Iterator[int]:
    """The database's line held through a file description of its own, as another
    process would hold it."""
    fd = os.open(f"{os.path.abspath(make_url(url).database)}-writers", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _held(url: str) -> bool:
    fd = os.open(f"{os.path.abspath(make_url(url).database)}-writers", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_waits_for_the_writer_whose_turn_it_is(sqlite_store, sqlite_url):
    before = sqlite_store.counters().get(COUNTER, 0)
    with _line_held(sqlite_url) as fd:
        writer = threading.Thread(target=sqlite_store.count, args=({COUNTER: 1},))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive()
        assert sqlite_store.counters().get(COUNTER, 0) == before
        fcntl.flock(fd, fcntl.LOCK_UN)
        writer.join(timeout=10)
    assert not writer.is_alive()
    assert sqlite_store.counters()[COUNTER] == before + 1


def test_a_write_inside_another_on_the_same_thread_keeps_the_turn(sqlite_store, sqlite_url):
    before = sqlite_store.counters().get(COUNTER, 0)
    turns = sqlite_store._turns
    assert turns is not None
    with turns.turn():
        sqlite_store.count({COUNTER: 1})
        assert _held(sqlite_url)
    assert not _held(sqlite_url)
    assert sqlite_store.counters()[COUNTER] == before + 1
