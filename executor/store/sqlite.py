"""SQLite: the embedded default, where many Ray worker processes write one file at once.

- WAL lets readers proceed during a write.
- The busy timeout makes writers queue instead of failing.
- Writes open with BEGIN IMMEDIATE, so two writers never deadlock upgrading a shared
  lock (pysqlite's own deferred BEGIN would). That write lock covers the whole database,
  so SQLite needs neither row locks nor name locks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from executor.store.sql import SqlStore
from executor.store.statements import DirectStatement, Statements

#: Seconds a writer waits for SQLite's write lock before failing.
BUSY_TIMEOUT = 60
_BEGIN, _BEGIN_WRITE = DirectStatement("BEGIN", {}), DirectStatement("BEGIN IMMEDIATE", {})


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

        return cls(url, engine, statements, clock)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(gnomon_write=True)
            with conn.begin():
                yield conn

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return "locked" in message or "busy" in message
