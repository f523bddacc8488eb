"""PostgreSQL: the cluster database, a network round trip away.

Round trips are what a task's finish costs here, so:

- Writes skip the pool's checkout ping: they retry on a lost connection anyway
  (``_retrying``), and a database restart invalidates the whole pool at the first one.
- Reads are not retried, so they keep the ping; they run in autocommit, because under
  READ COMMITTED a transaction adds BEGIN and ROLLBACK and no consistency.
- Creating a workflow with its tasks, a task's usual finish (a checkpoint, no log, no
  continuation), a batch of outcomes and ``finished_tasks`` are one statement each
  (``statements.DirectForms``), sent on a connection of the thread's own
  (``direct.DirectConnections``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from executor.store.direct import DirectConnections
from executor.store.sql import SqlStore
from executor.store.statements import Statements

#: Seconds to wait for a connection: a host that drops packets (not one that refuses)
#: would otherwise hang each connect for the kernel's TCP timeout, minutes, before a
#: retry or a clear 503.
CONNECT_TIMEOUT = 5
#: Words in the errors of a connection that broke or could not be made.
_LOST = ("connection", "terminating", "shutting down", "starting up", "timeout")


class PostgresStore(SqlStore, backend="postgresql"):
    row_locks = True
    name_locks = True
    #: Reads: the checked engine, in autocommit.
    _autocommit: Engine

    @classmethod
    def open(cls, url: str, statements: Statements, clock: Callable[[], float]) -> PostgresStore:
        options: dict[str, Any] = {
            "pool_size": 5,
            "max_overflow": 10,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT},
        }
        store = cls(url, sa.create_engine(url, **options), statements, clock)
        store.checked_engine = sa.create_engine(url, pool_pre_ping=True, **options)
        store.direct = DirectConnections(store.engine, CONNECT_TIMEOUT)
        store._autocommit = store.checked_engine.execution_options(isolation_level="AUTOCOMMIT")
        return store

    def _reader(self) -> Engine:
        return self._autocommit

    def _is_transient(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return super()._is_transient(error) or any(word in message for word in _LOST)
