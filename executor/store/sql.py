"""``SqlStore``: the store's contract (``base.Store``) over SQLAlchemy Core.

One implementation for both databases, put together from its parts: workflows
(``workflows.py``), tasks (``tasks.py``) and the mailbox (``mailbox.py``), over the
transactions and retry policy they share (``core.py``). A subclass per database
(``sqlite.py``, ``postgres.py``) configures connections and sets what the database can
do; ``SqlStore.create(url)`` picks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from executor.errors import InvalidInputError
from executor.store.alerts import AlertStore
from executor.store.backfills import BackfillStore
from executor.store.base import Store
from executor.store.mailbox import MailboxStore
from executor.store.pools import PoolStore
from executor.store.reruns import RerunStore
from executor.store.statements import STATEMENTS, Statements, Tables


class SqlStore(RerunStore, MailboxStore, AlertStore, BackfillStore, PoolStore, Store):
    """Durable state in SQLite or PostgreSQL; see ``base.Store`` for the contract."""

    #: The subclass for each database backend, by SQLAlchemy's backend name.
    _dialects: ClassVar[dict[str, type[SqlStore]]] = {}

    def __init_subclass__(cls, backend: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if backend is not None:
            SqlStore._dialects[backend] = cls

    @classmethod
    def create(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        tables: Tables | None = None,
    ) -> SqlStore:
        """The store for a SQLAlchemy URL (``postgresql://`` means psycopg 3, which
        Gnomon ships with); raises ``InvalidInputError`` for a URL it cannot use.

        ``clock`` is the time leases are measured by. ``tables`` replaces the schema's
        tables (a test of a schema change); every statement is built from them."""
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError:
            raise InvalidInputError(
                f"Invalid database URL {url}: expected dialect+driver://user:password@host/db"
            ) from None
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        dialect = SqlStore._dialects.get(parsed.get_backend_name())
        if dialect is None:
            raise InvalidInputError(
                f"Unsupported database {parsed.get_backend_name()!r}: "
                "Gnomon stores state in SQLite or PostgreSQL"
            )
        backend = parsed.get_backend_name()
        statements = STATEMENTS[backend] if tables is None else Statements(tables, backend)
        try:
            return dialect.open(parsed.render_as_string(hide_password=False), statements, clock)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
            raise InvalidInputError(f"Invalid database URL {url}: {error}") from None

    @classmethod
    def open(cls, url: str, statements: Statements, clock: Callable[[], float]) -> SqlStore:
        """Connect to ``url``, a URL of this subclass's database."""
        raise NotImplementedError

    def ping(self) -> None:
        with self._read() as conn:
            conn.exec_driver_sql("SELECT 1")
