"""SQLite: the embedded default, where many Ray worker processes write one file at once.

- WAL lets readers proceed during a write.
- The busy timeout makes writers queue instead of failing.
- Writes open with BEGIN IMMEDIATE, so two writers never deadlock upgrading a shared
  lock (pysqlite's own deferred BEGIN would). That write lock covers the whole database,
  so SQLite needs neither row locks nor name locks.
- Writers take turns (``WriterTurns``) before they ask SQLite for that lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from executor.store.sql import SqlStore
from executor.store.statements import DirectStatement, Statements

#: Seconds a writer waits for SQLite's write lock before failing.
BUSY_TIMEOUT = 60
_BEGIN, _BEGIN_WRITE = DirectStatement("BEGIN", {}), DirectStatement("BEGIN IMMEDIATE", {})


class WriterTurns:
    """The writers of one database file on this host, in line for its write lock.

    SQLite's busy handler polls for a lock held by another connection, sleeping 1, 2,
    5, ... ms between tries, where a write holds it for a fraction of a millisecond:
    under load, a writer sleeps past its turn while holding its worker's CPU. Waiting
    on a lock of the kernel's instead wakes it as the writer before it ends. The threads
    of a process share one line (``of``) and queue on a lock of their own first; a write
    begun inside another on the same thread skips the line, as SQLite's own locking
    still decides. So does a writer that never joins it (another tool), which only
    makes these wait for it as before."""

    _lines: ClassVar[dict[str, WriterTurns]] = {}
    _lines_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self._path = f"{path}-writers"
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @classmethod
    def of(cls, path: str) -> WriterTurns:
        with cls._lines_lock:
            return cls._lines.setdefault(path, cls(path))

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    if self._fd is None:
                        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


class SqliteStore(SqlStore, backend="sqlite"):
    @classmethod
    def open(cls, url: str, statements: Statements, clock: Callable[[], float]) -> SqliteStore:
        path = make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's events emit BEGIN, not pysqlite
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("gnomon_write", False)
            cls._run_in(conn, _BEGIN_WRITE if immediate else _BEGIN, {})

        store = cls(url, engine, statements, clock)
        if path and path != ":memory:":
            store._turns = WriterTurns.of(os.path.abspath(path))
        return store

    #: In line for the file's write lock; None for a database in memory.
    _turns: WriterTurns | None = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._turn(), self.engine.connect() as conn:
            conn.execution_options(gnomon_write=True)
            with conn.begin():
                yield conn

    def _turn(self) -> Any:
        return nullcontext() if self._turns is None else self._turns.turn()

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return "locked" in message or "busy" in message
