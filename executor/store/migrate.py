"""Schema upgrades through Alembic, run at start-up when the database is behind."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from executor.store.sql import SqlStore

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "gnomon_alembic_version"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest revision, or several joined by ``+`` while branches await a merge."""
    heads = sorted(ScriptDirectory.from_config(_config()).get_heads())
    return "+".join(heads) or None


def current_revision(store: SqlStore) -> str | None:
    # Checked engine: migrations run at start-up, often right after the database did.
    with store.checked_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = sorted(context.get_current_heads())
    return "+".join(heads) or None


def upgrade(store: SqlStore) -> bool:
    """Bring the schema to head; True if anything ran."""
    if current_revision(store) == head_revision():
        return False
    config = _config()
    with store.checked_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7216640)")
        config.attributes["connection"] = conn
        command.upgrade(config, "heads")
    return True
