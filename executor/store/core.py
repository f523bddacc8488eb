"""What every part of the SQL store shares: the engine, transactions, the retry policy,
error translation, and what the database can do (capability flags).

``SqlStore`` is put together from parts that each own a family of records (workflows,
tasks, the mailbox); they all derive from ``SqlCore``. The dialect modules
(``sqlite.py``, ``postgres.py``) set the flags and configure connections; nothing else
branches on the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from executor.errors import DatabaseError, DatabaseUnavailableError
from executor.store.direct import DirectConnections
from executor.store.statements import DirectStatement, Statements

T = TypeVar("T")

#: How long a write keeps retrying while the database is unreachable (a restart, a failover).
WRITE_RETRY_SECONDS = float(os.environ.get("GNOMON_DB_RETRY_SECONDS", "60"))


class SqlCore:
    #: ``SELECT ... FOR UPDATE [SKIP LOCKED]`` locks rows; without it, a write
    #: transaction must already exclude other writers (SQLite's IMMEDIATE one does).
    row_locks = False
    #: ``name_lock`` serialises transactions on a name (PostgreSQL's advisory locks);
    #: without it, write transactions already run one at a time.
    name_locks = False

    def __init__(
        self,
        url: str,
        engine: Engine,
        statements: Statements,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.engine = engine
        #: For code outside the store, which does not retry (APScheduler's job store,
        #: migrations): its connections are checked before use.
        self.checked_engine = engine
        self.sql = statements
        self.tables = statements.tables
        #: The time leases are measured by; tests pass their own.
        self.clock = clock
        #: Connections that send ``self.sql.direct``'s one-statement forms; None where the
        #: database has none (the forms are PostgreSQL's).
        self.direct: DirectConnections | None = None

    def dispose(self) -> None:
        self.engine.dispose()
        if self.checked_engine is not self.engine:
            self.checked_engine.dispose()
        if self.direct is not None:
            self.direct.close()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------- transactions

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; its errors come out as SQLAlchemy's, for ``_retrying``."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads, which are not retried: errors come out translated."""
        try:
            with self._reader().connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as error:
            raise self._translate(error) from error

    def _reader(self) -> Engine:
        return self.engine

    def _retrying(self, operation: Callable[[], T]) -> T:
        """Run a write, again with backoff while the database is unreachable, for up to
        ``WRITE_RETRY_SECONDS``; then ``DatabaseUnavailableError``. Any other database
        error comes out as ``DatabaseError`` at once."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                return operation()
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
                if not self._is_transient(error) or time.monotonic() > deadline:
                    raise self._translate(error) from error
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except sa.exc.SQLAlchemyError as error:
                raise self._translate(error) from error

    def _send(self, statement: DirectStatement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Send a one-statement form on this thread's direct connection."""
        assert self.direct is not None
        return self.direct.execute(statement, params)

    @staticmethod
    def _run_in(
        conn: Connection, statement: DirectStatement, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run a compiled statement in ``conn``'s transaction, on its driver connection:
        SQLAlchemy's own execution costs several times what the driver spends on a short
        statement. Its rows, if any."""
        with _driver_errors(conn, statement.sql, params) as cursor:
            cursor.execute(statement.sql, statement.params(params))
            return list(cursor.fetchall()) if cursor.description else []

    @staticmethod
    def _run_many(
        conn: Connection, statement: DirectStatement, rows: Sequence[dict[str, Any]]
    ) -> None:
        """``_run_in`` once per parameter set of ``rows``, as one call to the driver."""
        with _driver_errors(conn, statement.sql, rows[0]) as cursor:
            cursor.executemany(statement.sql, [statement.params(row) for row in rows])

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        """Errors worth retrying: a lost connection, not a missing table."""
        return bool(error.connection_invalidated) or isinstance(error, sa.exc.InterfaceError)

    def _translate(self, error: sa.exc.SQLAlchemyError) -> DatabaseError:
        """SQLAlchemy's error as the store's: ``DatabaseUnavailableError`` when the
        database could not be reached or used, ``DatabaseError`` when it refused."""
        orig = getattr(error, "orig", None)
        lines = str(orig or error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return DatabaseUnavailableError(self.safe_url, reason)
        return DatabaseError(self.safe_url, reason)

    # ---------------------------------------------------------------- locking

    def _lock(self, query: sa.Select[Any], skip_locked: bool = False) -> sa.Select[Any]:
        """Lock the rows ``query`` reads until the transaction ends, where the database
        locks rows (``row_locks``): two writers never take one row. ``skip_locked``
        passes over rows another transaction holds."""
        return query.with_for_update(skip_locked=skip_locked) if self.row_locks else query

    def _name_lock(self, conn: Connection, key: str) -> None:
        """Serialise this transaction with every other taking the same key."""
        if self.name_locks:
            conn.execute(self.sql.name_lock, {"key": key})


@contextmanager
def _driver_errors(conn: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection; the driver's errors come out as
    SQLAlchemy's, which the store's retry policy reads."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi_error as error:
        raise sa.exc.DBAPIError.instance(sql, params, error, dbapi_error) from error
    finally:
        cursor.close()
