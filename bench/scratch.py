"""What the benchmarks share: a scratch database and percentiles."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "GNOMON_TEST_PG", "postgresql+psycopg://gnomon@127.0.0.1:5432/postgres"
)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL database (as ``$GNOMON_TEST_PG``), dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"gnomon_bench_{os.getpid()}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.engine.make_url(PG_ADMIN_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        from executor.config import _handles

        for store, _ in list(_handles.values()):
            store.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def ms(values: list[float]) -> str:
    return (
        f"p50 {1e3 * statistics.median(values):7.1f} ms   "
        f"p99 {1e3 * percentile(values, 0.99):7.1f} ms   max {1e3 * max(values):7.1f} ms"
    )
