"""Commands on workflow runs: run, list, status, output, resume, cancel, delete, send-event."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import click

from executor.status import WorkflowStatus
from executor.store import WorkflowRecord
from executor.store.records import workflow_detail_json, workflow_json
from scheduler.cli.context import EXIT_FAILED, Context, database_options, parse_params
from scheduler.cli.progress import follow
from scheduler.cli.tables import (
    echo_json,
    format_value,
    last_line,
    status_text,
    workflows_table,
)
from scheduler.errors import InvalidTargetError
from scheduler.loader import import_target

_STATUSES = [status.value for status in WorkflowStatus]


def resolve_target(value: Any, params: dict[str, Any], workflow_id: str | None) -> dict[str, Any]:
    """What ``gnomon run`` submits for a target: a registered factory, a DAG, a remote
    function (bound to the params), or a function returning a DAG."""
    from ray.dag import DAGNode
    from ray.remote_function import RemoteFunction

    schedule = getattr(value, "gnomon_schedule", None)
    if schedule is not None:
        run = schedule.make_run(datetime.now(timezone.utc), params, "manual", workflow_id)
        return {
            "dag": schedule.factory(run),
            "kwargs": {},
            "workflow_id": run.workflow_id,
            "name": schedule.name,
            "metadata": schedule.run_metadata(run),
        }
    name = getattr(value, "__name__", None) or getattr(
        getattr(value, "_function", None), "__name__", None
    )
    if isinstance(value, DAGNode):
        dag, kwargs = value, params
    elif isinstance(value, RemoteFunction):
        dag, kwargs = value.bind(**params), {}
    elif callable(value):
        dag, kwargs = value(**params), {}
        if not isinstance(dag, DAGNode):
            raise InvalidTargetError(
                f"{name or value!r} returned {type(dag).__name__}, not a DAG (f.bind(...))"
            )
    else:
        raise InvalidTargetError(
            f"{value!r} is not a DAG, a remote function or a function returning a DAG"
        )
    name = name or "workflow"
    return {
        "dag": dag,
        "kwargs": kwargs,
        "name": name,
        "workflow_id": workflow_id or f"{name}.{uuid.uuid4().hex[:12]}",
        "metadata": {"params": params} if params else {},
    }


def report_end(gn: Context, record: WorkflowRecord, as_json: bool = False) -> None:
    """Print how a followed run ended; exit 1 unless it succeeded."""
    if record.status == WorkflowStatus.SUCCESSFUL:
        value = gn.workflow().get_output(record.workflow_id)
        if as_json:
            echo_json({"id": record.workflow_id, "status": record.status.value, "output": value})
        else:
            click.echo(format_value(value))
        return
    reason = last_line(record.error) or record.status.value.lower()
    if as_json:
        echo_json({"id": record.workflow_id, "status": record.status.value, "error": reason})
    click.echo(
        f"Error: Workflow {record.workflow_id!r} is {record.status.value}: {reason}", err=True
    )
    if record.status == WorkflowStatus.RESUMABLE:
        click.echo(f"Resume it with: gnomon resume {record.workflow_id}", err=True)
    raise click.exceptions.Exit(EXIT_FAILED)


@click.command()
@click.argument("target", metavar="MODULE:FUNC")
@click.option("--id", "workflow_id", help="Workflow id (default: generated).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; VALUE is parsed as JSON when it can be. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@database_options(needs_ray=True)
def run(
    gn: Context, target: str, workflow_id: str | None, params: tuple[str, ...], as_json: bool
) -> None:
    """Run one workflow to its end, with a progress bar of its tasks.

    MODULE is a dotted module name or a path to a .py file; FUNC is a registered DAG
    factory, a DAG, a remote function, or a function that returns a DAG.
    """
    parsed = parse_params(params)
    spec = resolve_target(import_target(target), parsed, workflow_id)
    api = gn.workflow()
    ref = api.submit(
        spec["dag"],
        (),
        spec["kwargs"],
        workflow_id=spec["workflow_id"],
        metadata=spec["metadata"],
        name=spec["name"],
        trigger="manual",
    )
    workflow_id = spec["workflow_id"]
    click.echo(f"Running {workflow_id}", err=True)
    try:
        record = follow(gn.store(), workflow_id, ref)
    except KeyboardInterrupt:
        click.echo(f"\nInterrupted. Resume it with: gnomon resume {workflow_id}", err=True)
        raise click.exceptions.Exit(130) from None
    report_end(gn, record, as_json)


@click.command("list")
@click.option(
    "--status", type=click.Choice(_STATUSES, case_sensitive=False), help="Only runs in this status."
)
@click.option("--name", help="Only runs of this workflow or schedule name.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def list_(gn: Context, status: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    statuses = [WorkflowStatus(status.upper())] if status else None
    records = gn.store().list_workflows(statuses=statuses, name=name, limit=limit)
    if as_json:
        echo_json([workflow_json(record) for record in records])
    elif records:
        click.echo(workflows_table(records))
    else:
        click.echo("No workflows.", err=True)


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options()
def status(gn: Context, workflow_id: str, as_json: bool) -> None:
    """Show a run and its tasks."""
    store = gn.store()
    record = store.get_workflow(workflow_id)
    tasks = store.load_tasks(workflow_id)
    if as_json:
        echo_json(workflow_detail_json(record, tasks))
    else:
        click.echo(status_text(record, tasks))


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--task", "task_id", metavar="T", help="One task's output instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the output as JSON.")
@database_options(needs_ray=True)
def output(gn: Context, workflow_id: str, task_id: str | None, as_json: bool) -> None:
    """Print a run's output (waits while it is still running)."""
    store = gn.store()
    store.get_workflow(workflow_id)
    if task_id is not None:
        store.get_task(workflow_id, task_id)
    value = gn.workflow().get_output(workflow_id, task_id=task_id)
    if as_json:
        echo_json(value)
    else:
        click.echo(format_value(value))


@click.command()
@click.argument("workflow_id", metavar="ID", required=False)
@click.option("--all", "resume_all", is_flag=True, help="Every RESUMABLE run.")
@click.option("--include-failed", is_flag=True, help="With --all: FAILED runs too.")
@database_options(needs_ray=True)
def resume(gn: Context, workflow_id: str | None, resume_all: bool, include_failed: bool) -> None:
    """Resume a run (finished tasks do not run again) and follow it to its end."""
    if bool(workflow_id) == resume_all:
        raise click.UsageError("Give a workflow ID or --all, not both or neither.")
    store = gn.store()
    if workflow_id is not None:
        store.get_workflow(workflow_id)
        ref = gn.workflow().resume_async(workflow_id)
        report_end(gn, follow(store, workflow_id, ref))
        return
    resumed = gn.workflow().resume_all(include_failed=include_failed)
    if not resumed:
        click.echo("Nothing to resume.", err=True)
        return
    failed = 0
    for each_id, ref in resumed:
        click.echo(f"Resuming {each_id}", err=True)
        record = follow(store, each_id, ref)
        failed += record.status != WorkflowStatus.SUCCESSFUL
        click.echo(f"{each_id}  {record.status.value}")
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@click.command()
@click.argument("workflow_id", metavar="ID")
@database_options(needs_ray=True)
def cancel(gn: Context, workflow_id: str) -> None:
    """Cancel a run; its finished tasks stay checkpointed."""
    gn.store().get_workflow(workflow_id)
    gn.workflow().cancel(workflow_id)
    click.echo(f"Canceled {workflow_id}")


@click.command()
@click.argument("workflow_id", metavar="ID")
@database_options(needs_ray=True)
def delete(gn: Context, workflow_id: str) -> None:
    """Delete a finished run, its tasks and checkpoints."""
    gn.store().get_workflow(workflow_id)
    gn.workflow().delete(workflow_id)
    click.echo(f"Deleted {workflow_id}")


@click.command("send-event")
@click.argument("workflow_id", metavar="ID")
@click.argument("event_key", metavar="KEY")
@click.argument("payload", metavar="JSON")
@database_options(needs_ray=True)
def send_event(gn: Context, workflow_id: str, event_key: str, payload: str) -> None:
    """Deliver a JSON payload to a run's mailbox (wait_for_event(HTTPListener, ...))."""
    try:
        value = json.loads(payload)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="JSON") from None
    gn.store().get_workflow(workflow_id)
    api = gn.workflow()
    if not hasattr(api, "send_event"):
        raise click.ClickException("This executor has no event mailbox (workflow.send_event)")
    api.send_event(workflow_id, event_key, value)
    click.echo(f"Sent {event_key} to {workflow_id}")


COMMANDS = [run, list_, status, output, resume, cancel, delete, send_event]
