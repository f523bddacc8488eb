"""Running a run again after a fix: retry with current code, clear tasks, fork.

With current code the run's graph is built again from its registered workflow, so the
dags folder must be loaded here (``--dags``, or ``$GNOMON_DAGS``), as ``gnomon up``
loads it.
"""

from __future__ import annotations

from typing import Any

import click

from scheduler.cli.context import Context, database_options, parse_params
from scheduler.cli.progress import follow
from scheduler.cli.workflows import report_end
from scheduler.loader import DagsFolder
from scheduler.registry import Registry

_DAGS = click.option(
    "--dags",
    "dags",
    multiple=True,
    envvar="GNOMON_DAGS",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="The dags folder(s) the registered workflow is loaded from ($GNOMON_DAGS).",
)
_PARAMS = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A param over the recorded ones (JSON when it parses). Repeatable.",
)


def _rebuild(dags: tuple[str, ...], needed: bool) -> Any:
    """The ``rebuild`` of the registry loaded from ``dags``; None when the code is the
    recorded one."""
    if not needed:
        return None
    if not dags:
        raise click.UsageError(
            "Current code is built from the dags folder: give --dags DIR (or set GNOMON_DAGS)"
        )
    registry = Registry()
    for folder in dags:
        for path, message in DagsFolder(folder, registry).refresh().errors.items():
            click.echo(f"Warning: dags file {path} did not load: {message}", err=True)
    return registry.rebuild


def _follow(gn: Context, workflow_id: str, ref: Any) -> None:
    click.echo(f"Running {workflow_id}", err=True)
    report_end(gn, follow(gn.store(), workflow_id, ref))


@click.command()
@click.argument("workflow_id", metavar="ID")
@_PARAMS
@_DAGS
@database_options(needs_ray=True)
def retry(gn: Context, workflow_id: str, params: tuple[str, ...], dags: tuple[str, ...]) -> None:
    """Run a registered run again with its workflow's current code: finished tasks whose
    inputs did not change keep their results; the rest runs on the same ID."""
    gn.store().get_workflow(workflow_id)
    api = gn.workflow()
    ref = api.retry(workflow_id, params=parse_params(params), rebuild=_rebuild(dags, True))
    _follow(gn, workflow_id, ref)


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("tasks", metavar="TASK...", nargs=-1, required=True)
@click.option("--no-downstream", is_flag=True, help="Only these tasks, not what depends on them.")
@click.option(
    "--current-code", is_flag=True, help="Rebuild the graph from the code loaded now (--dags)."
)
@_DAGS
@database_options(needs_ray=True)
def clear(
    gn: Context,
    workflow_id: str,
    tasks: tuple[str, ...],
    no_downstream: bool,
    current_code: bool,
    dags: tuple[str, ...],
) -> None:
    """Run tasks of a finished run again, with everything downstream of them; their
    earlier attempts stay as history."""
    gn.store().get_workflow(workflow_id)
    ref = gn.workflow().clear(
        workflow_id,
        list(tasks),
        downstream=not no_downstream,
        code="current" if current_code else "recorded",
        rebuild=_rebuild(dags, current_code),
    )
    _follow(gn, workflow_id, ref)


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--from", "from_task", metavar="TASK", help="Run this task and its downstream.")
@_PARAMS
@click.option("--id", "new_id", metavar="NEW", help="The new run's ID (default: ID~fork<n>).")
@click.option(
    "--code",
    type=click.Choice(["current", "recorded"]),
    help="Default: current for a registered workflow, else recorded.",
)
@_DAGS
@database_options(needs_ray=True)
def fork(
    gn: Context,
    workflow_id: str,
    from_task: str | None,
    params: tuple[str, ...],
    new_id: str | None,
    code: str | None,
    dags: tuple[str, ...],
) -> None:
    """Start a new run from this one's finished tasks (it may still be running)."""
    record = gn.store().get_workflow(workflow_id)
    current = code == "current" or (code is None and "schedule" in record.user_metadata)
    api = gn.workflow()
    forked = api.fork(
        workflow_id,
        from_task=from_task,
        params=parse_params(params) or None,
        new_id=new_id,
        code=code or ("current" if current else "recorded"),
        rebuild=_rebuild(dags, current),
    )
    _follow(gn, forked, api.get_output_async(forked))


COMMANDS = [retry, clear, fork]
