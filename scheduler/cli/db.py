"""``gnomon db upgrade``: bring the database schema (and the scheduler's job table) up to date."""

from __future__ import annotations

import click

from executor.config import handles
from executor.store.migrate import current_revision, head_revision, upgrade
from scheduler.cli.context import Context, database_options
from scheduler.jobs import jobstore_for


@click.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@database_options()
def upgrade_command(gn: Context) -> None:
    """Run the schema migrations (``gnomon up`` also runs them at start)."""
    store = handles(gn.config).store
    before = current_revision(store)
    ran = upgrade(store)
    jobstore_for(store.checked_engine)
    head = head_revision()
    if ran:
        click.echo(f"Upgraded {gn.safe_url} from {before or 'an empty database'} to {head}")
    else:
        click.echo(f"{gn.safe_url} is up to date (revision {head})")
