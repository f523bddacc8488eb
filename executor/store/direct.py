"""Sending PostgreSQL's one-statement forms without SQLAlchemy's Connection.

Through SQLAlchemy, checking a pooled connection out and in, switching it to autocommit
and back, and wrapping the cursor cost more CPU than psycopg spends sending the
statement itself. So each thread keeps one autocommit psycopg connection of its own for
the hot path's statements (``statements.DirectForms``). Errors come out as SQLAlchemy's
exception classes, so the store's retry policy treats both paths alike.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import psycopg
import sqlalchemy as sa

from executor.store.statements import DirectStatement


class DirectConnections:
    """One autocommit psycopg connection per thread, opened on first use."""

    def __init__(self, engine: sa.Engine, connect_timeout: int) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args = args
        self._kwargs = {**kwargs, "connect_timeout": connect_timeout, "autocommit": True}
        self._local = threading.local()
        #: Every thread's connection, so ``close`` reaches them all.
        self._open: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    def execute(self, statement: DirectStatement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; the rows it returned, if any."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        values = statement.params(params)
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(*self._args, **self._kwargs)
                self._local.conn = conn
                self._open.add(conn)
            cursor = conn.execute(statement.sql, values, prepare=True)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as error:
            lost = isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
            if lost and conn is not None:
                conn.close()  # the next statement reconnects
            raise sa.exc.DBAPIError.instance(
                statement.sql, values, error, psycopg.Error, connection_invalidated=lost
            ) from error

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
