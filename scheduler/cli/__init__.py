"""The ``gnomon`` command line.

Exit codes: 0 success; 1 a workflow (or the operation) failed, or the database is
unreachable; 2 a usage error (bad arguments, an unknown id or schedule name). A user
mistake prints one line on stderr, never a traceback (see ``context.user_error``).
"""

from __future__ import annotations

import sys

import click

from scheduler.cli import backfills, db, pools, recovery, schedules, up, workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gnomon")
def cli() -> None:
    """Gnomon: durable workflows on Ray, with a scheduler and a dashboard."""


for command in [
    *workflows.COMMANDS,
    *recovery.COMMANDS,
    *schedules.COMMANDS,
    *pools.COMMANDS,
    *backfills.COMMANDS,
    up.up,
    db.db,
]:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="gnomon")


if __name__ == "__main__":
    main(sys.argv[1:])
