"""Commands on backfills: ``gnomon backfill NAME --start --end``, and ``gnomon backfills``
(list, show/watch, pause, unpause, cancel).

They work on the store and the scheduler's job store, so they need neither Ray nor the
dags files: the running ``gnomon up`` that has the schedule registered starts the runs.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import click

from executor.store.records import BackfillRecord, backfill_json
from scheduler.cli.context import EXIT_FAILED, Context, database_options, parse_params
from scheduler.cli.tables import echo_json, render_table, timestamp

#: Seconds between reads of a watched backfill.
WATCH_SECONDS = 0.5


@click.command()
@click.argument("name")
@click.option("--start", required=True, help="First date (2026-01-01) or ISO date-time.")
@click.option("--end", required=True, help="Last date or date-time (included).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--max-active", type=int, help="Runs at once (default: max_active_runs).")
@click.option("--reverse", is_flag=True, help="Newest tick first.")
@click.option("--rerun-failed", is_flag=True, help="Resume the ticks whose run FAILED.")
@click.option("--dry-run", is_flag=True, help="List the runs it would start; start none.")
@click.option("--yes", is_flag=True, help="Confirm a backfill of more than 10,000 ticks.")
@click.option("--wait", is_flag=True, help="Follow it to its end with a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def backfill(
    gn: Context,
    name: str,
    start: str,
    end: str,
    params: tuple[str, ...],
    max_active: int | None,
    reverse: bool,
    rerun_failed: bool,
    dry_run: bool,
    yes: bool,
    wait: bool,
    as_json: bool,
) -> None:
    """Run schedule NAME's ticks from --start to --end (its runs: NAME@<tick>)."""
    record, runs = gn.control().backfill(
        name,
        start,
        end,
        parse_params(params),
        max_active=max_active,
        reverse=reverse,
        rerun_failed=rerun_failed,
        dry_run=dry_run,
        confirmed=yes,
    )
    if as_json:
        echo_json({"backfill_id": record.backfill_id if record else None, "runs": runs})
    elif record is None:
        click.echo("\n".join(runs))
        click.echo(f"Dry run: {len(runs)} run(s) would start.", err=True)
    else:
        click.echo(record.backfill_id)
        skipped = record.progress.skipped
        click.echo(
            f"Backfill of {name}: {len(runs)} run(s) to start"
            + (f", {skipped} tick(s) skipped (they have a run)" if skipped else ""),
            err=True,
        )
    if wait and record is not None:
        final = watch(gn, record.backfill_id)
        if final.progress.failed or final.state != "done":
            raise click.exceptions.Exit(EXIT_FAILED)


@click.group(invoke_without_command=True)
@click.option("--name", help="Only the backfills of this schedule.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def backfills(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List backfills (newest first); see the subcommands to watch, pause or cancel one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_list, name=name, as_json=as_json)


@backfills.command("list")
@click.option("--name", help="Only the backfills of this schedule.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def _list(gn: Context, name: str | None, as_json: bool) -> None:
    """List backfills, newest first."""
    records = gn.control().backfills(name)
    if as_json:
        echo_json([backfill_json(record) for record in records])
        return
    if not records:
        click.echo("No backfills.", err=True)
        return
    click.echo(
        render_table(
            ["ID", "SCHEDULE", "STATE", "PROGRESS", "RANGE", "CREATED"],
            [
                [
                    r.backfill_id,
                    r.name,
                    r.state,
                    progress_text(r),
                    f"{timestamp(r.start_at)}..{timestamp(r.end_at)}",
                    timestamp(r.created_at),
                ]
                for r in records
            ],
        )
    )


@backfills.command("show")
@click.argument("backfill_id")
@click.option("--watch", "follow", is_flag=True, help="Follow it to its end.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def show(gn: Context, backfill_id: str, follow: bool, as_json: bool) -> None:
    """A backfill's progress: done, running, queued, failed."""
    record = watch(gn, backfill_id) if follow else gn.control().get_backfill(backfill_id)
    if as_json:
        echo_json(backfill_json(record))
    elif not follow:
        click.echo(f"{record.backfill_id}  {record.name}  {record.state}  {progress_text(record)}")


def _action(action: str) -> None:
    @backfills.command(action)
    @click.argument("backfill_id")
    @database_options()
    def change(gn: Context, backfill_id: str) -> None:
        record = gn.control().change_backfill(backfill_id, action)
        click.echo(f"Backfill {record.backfill_id} is {record.state}")

    change.help = f"{action.capitalize()} a backfill" + (
        " (its running runs are canceled too)." if action == "cancel" else "."
    )


for _name in ("pause", "unpause", "cancel"):
    _action(_name)


def progress_text(record: BackfillRecord) -> str:
    p = record.progress
    text = f"{p.done}/{p.total - p.skipped} done, {p.running} running, {p.queued} queued"
    text += f", {p.failed} failed"
    if p.canceled:
        text += f", {p.canceled} canceled"
    if p.skipped:
        text += f" ({p.skipped} skipped)"
    return text


def watch(gn: Context, backfill_id: str, stream: TextIO | None = None) -> BackfillRecord:
    """Draw a backfill's progress until it ends; returns it as it ended."""
    stream = stream or sys.stderr
    interactive = stream.isatty()
    last: Any = None
    while True:
        record = gn.control().get_backfill(backfill_id)
        p = record.progress
        total = max(p.total - p.skipped, 1)
        filled = int(28 * (p.done + p.failed + p.canceled) / total)
        line = f"[{'#' * filled}{'.' * (28 - filled)}] {progress_text(record)}  {record.state}"
        if line != last:
            stream.write(f"\r{line}\x1b[K" if interactive else line + "\n")
            stream.flush()
            last = line
        if record.state in ("done", "canceled"):
            if interactive:
                stream.write("\n")
            return record
        time.sleep(WATCH_SECONDS)


COMMANDS = [backfill, backfills]
