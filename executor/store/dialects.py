"""Dialect quirks, one subclass each, with why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from executor.store.sql import SqlStore


class SqliteStore(SqlStore):
    """SQLite: many Ray worker processes write one file at once.

    WAL lets readers proceed during a write; the busy timeout makes writers queue instead
    of failing; writes open with BEGIN IMMEDIATE so two writers never deadlock upgrading a
    shared lock (pysqlite's own deferred BEGIN would).
    """

    @classmethod
    def open(cls, url: str) -> SqliteStore:
        path = make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's events emit BEGIN, not pysqlite
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("gnomon_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return cls(url, engine)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(gnomon_write=True)
            with conn.begin():
                yield conn

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return "locked" in message or "busy" in message

    def _dialect_insert(self, table: sa.Table) -> Any:
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)


class PostgresStore(SqlStore):
    """PostgreSQL: the cluster database. Connections are checked before use so a
    database restart costs a retry, not an error."""

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        return cls(url, engine)

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return super()._is_transient(error) or any(
            word in message
            for word in ("connection", "terminating", "shutting down", "starting up", "timeout")
        )

    def _lock_oldest(self, query: sa.Select) -> sa.Select:
        return query.with_for_update(skip_locked=True)

    def _locked(self, query: sa.Select) -> sa.Select:
        return query.with_for_update()

    def _dialect_insert(self, table: sa.Table) -> Any:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
