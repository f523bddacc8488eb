"""Alembic environment: run against the connection ``executor.store.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from executor.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="gnomon_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
