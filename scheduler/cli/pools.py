"""``gnomon pool``: concurrency pools, which cap how many tasks use a resource at once.

They work on the database alone (no Ray): a change holds for the next slot any process
takes, and waiting tasks see a pool grow within a second.
"""

from __future__ import annotations

import click

from executor.pools import check_pool_name, check_slots, parse_rate
from executor.store.records import PoolRecord, pool_json
from scheduler.cli.context import Context, database_options
from scheduler.cli.tables import echo_json, render_table

#: What ``--rate`` takes to remove a pool's rate limit.
NO_RATE = "none"


@click.group()
def pool() -> None:
    """Concurrency pools: at most N tasks of a pool run at once, across every workflow."""


@pool.command("set")
@click.argument("name")
@click.option(
    "--slots",
    type=int,
    help="How many of its tasks may run at once; 0 pauses it. Needed to create a pool.",
)
@click.option(
    "--rate",
    metavar="N/PERIOD",
    help=f"At most N starts per period: 5/s, 100/min, 10/30s, 2/h ('{NO_RATE}' removes it).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def set_pool(gn: Context, name: str, slots: int | None, rate: str | None, as_json: bool) -> None:
    """Create pool NAME, or change its slots or rate (what is not given is kept)."""
    check_pool_name(name)
    store = gn.store()
    current = None if name in store.missing_pools([name]) else store.get_pool(name)
    if slots is None and current is None:
        raise click.UsageError(f"Pool {name!r} does not exist yet: give it --slots N")
    new_slots = check_slots(slots) if slots is not None else current.slots  # type: ignore[union-attr]
    if rate is None:
        new_rate = current.rate if current is not None else None
    else:
        new_rate = None if rate.strip().lower() == NO_RATE else parse_rate(rate)
    record = store.set_pool(name, new_slots, new_rate)
    if as_json:
        echo_json(pool_json(record))
        return
    click.echo(f"{'Created' if current is None else 'Set'} pool {name}: {_limits(record)}")


@pool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def list_pools(gn: Context, as_json: bool) -> None:
    """List pools: slots, slots in use, tasks queued, rate."""
    records = gn.store().list_pools()
    if as_json:
        echo_json([pool_json(record) for record in records])
        return
    if not records:
        click.echo("No pools. Create one with: gnomon pool set NAME --slots N", err=True)
        return
    rows = [[r.name, r.slots, r.used, r.queued, str(r.rate) if r.rate else None] for r in records]
    click.echo(render_table(["NAME", "SLOTS", "USED", "QUEUED", "RATE"], rows))


def _limits(record: PoolRecord) -> str:
    text = f"{record.slots} slot(s)" + (" (paused)" if record.slots == 0 else "")
    return text + (f", rate {record.rate} (starts)" if record.rate else "")


COMMANDS = [pool]
