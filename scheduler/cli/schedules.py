"""Commands on schedules: schedules, trigger, pause, unpause.

They work on the scheduler's job store, so they need neither Ray nor the dags files: a
trigger is stored as a job that the running ``gnomon up`` starts within a second.
"""

from __future__ import annotations

import click

from executor.status import WorkflowStatus
from scheduler.cli.context import EXIT_FAILED, Context, database_options, parse_params
from scheduler.cli.progress import follow
from scheduler.cli.tables import echo_json, last_line, render_table

#: How long ``trigger --wait`` waits for a running scheduler to start the run.
TRIGGER_PICKUP_SECONDS = 30.0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def schedules(gn: Context, as_json: bool) -> None:
    """List schedules: trigger, next run, paused, last run."""
    infos = gn.control().schedules()
    if as_json:
        echo_json([info.as_dict() for info in infos])
        return
    if not infos:
        click.echo("No schedules.", err=True)
        return
    rows = []
    for info in infos:
        data = info.as_dict()
        last = data["last_run"]
        rows.append(
            [
                info.name,
                info.trigger,
                data["next_run_at"],
                "yes" if info.paused else "no",
                info.backlog or None,
                f"{last['id']} {last['status']}" if last else None,
            ]
        )
    click.echo(render_table(["NAME", "TRIGGER", "NEXT RUN", "PAUSED", "QUEUED", "LAST RUN"], rows))


@click.command()
@click.argument("name")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Merged over the schedule's default params. Repeatable.",
)
@click.option("--id", "workflow_id", help="Workflow id (default: NAME@<now>).")
@click.option("--wait", is_flag=True, help="Follow the run to its end.")
@database_options()
def trigger(
    gn: Context, name: str, params: tuple[str, ...], workflow_id: str | None, wait: bool
) -> None:
    """Start a run of schedule NAME now."""
    workflow_id = gn.control().trigger(
        name, parse_params(params), trigger="manual", workflow_id=workflow_id
    )
    click.echo(workflow_id)
    if not wait:
        return
    record = follow(gn.store(), workflow_id, appear_within=TRIGGER_PICKUP_SECONDS)
    if record.status != WorkflowStatus.SUCCESSFUL:
        reason = last_line(record.error) or record.status.value.lower()
        click.echo(f"Error: Workflow {workflow_id!r} is {record.status.value}: {reason}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


@click.command()
@click.argument("name")
@database_options()
def pause(gn: Context, name: str) -> None:
    """Stop scheduling NAME (kept across restarts); manual triggers still run."""
    gn.control().pause(name)
    click.echo(f"Paused {name}")


@click.command()
@click.argument("name")
@database_options()
def unpause(gn: Context, name: str) -> None:
    """Schedule NAME again, from its next tick (paused ticks are not caught up)."""
    gn.control().unpause(name)
    info = gn.control().schedule(name)
    when = info.as_dict()["next_run_at"] or "no further tick"
    click.echo(f"Unpaused {name}; next run {when}")


COMMANDS = [schedules, trigger, pause, unpause]
