"""What every command shares: the database and Ray options, lazy handles, and the one-line
error a user mistake deserves instead of a traceback."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa

from executor.config import StoreConfig, handles
from executor.errors import (
    DatabaseUnavailableError,
    InvalidInputError,
    InvalidTypeError,
    TaskNotFoundError,
    WorkflowError,
    WorkflowNotFoundError,
)
from executor.store import SqlStore
from scheduler.errors import (
    BackfillNotFoundError,
    InvalidScheduleError,
    InvalidTargetError,
    RunExistsError,
    ScheduleNotFoundError,
)

#: Exit codes: 0 success, 1 a workflow (or the operation) failed, 2 a usage error.
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Errors that mean the user named something wrong: exit 2, like click's usage errors.
USAGE_ERRORS = (
    WorkflowNotFoundError,
    TaskNotFoundError,
    ScheduleNotFoundError,
    InvalidInputError,
    InvalidTypeError,
    InvalidScheduleError,
    InvalidTargetError,
    RunExistsError,
    BackfillNotFoundError,
)


class Context:
    """Handles a command opens on first use: the store, the workflow API (Ray), the
    scheduler's job store."""

    def __init__(
        self, database_url: str | None, storage: str | None, ray_address: str | None = None
    ) -> None:
        self.config = StoreConfig.resolve(database_url, storage)
        self.ray_address = ray_address
        self._store: SqlStore | None = None
        self._control: Any = None

    @property
    def safe_url(self) -> str:
        try:
            return sa.engine.make_url(self.config.database_url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return self.config.database_url

    def store(self) -> SqlStore:
        """The store, its schema brought up to date (no Ray needed)."""
        if self._store is None:
            from executor.store.migrate import upgrade

            store = handles(self.config)[0]
            upgrade(store)
            self._store = store
        return self._store

    def workflow(self, start_node: bool = False) -> Any:
        """``executor.workflow`` on this database; joins ``--ray-address`` (else
        ``$RAY_ADDRESS``) or starts a local Ray (``executor.cluster.connect``, which starts
        a node on this host for a joining service when ``start_node``)."""
        import ray

        from executor import workflow
        from executor.cluster import connect

        self.store()
        if not ray.is_initialized():
            connect(
                self.ray_address,
                start_node=start_node,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        workflow.init(self.config.database_url, storage=self.config.storage)
        return workflow

    def control(self) -> Any:
        """The scheduler's job store, opened without firing anything."""
        if self._control is None:
            from scheduler.registry import Registry
            from scheduler.service import SchedulerService

            self.store()
            self._control = SchedulerService(
                Registry(), self.config.database_url, storage=self.config.storage
            ).open()
        return self._control

    def close(self) -> None:
        if self._control is not None:
            self._control.stop()
            self._control = None


def database_options(needs_ray: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``--database-url`` and ``--storage`` (and ``--ray-address``) on a command, which
    receives a ``Context`` as its first argument."""

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def wrapper(
            database_url: str | None,
            storage: str | None,
            ray_address: str | None = None,
            **kwargs: Any,
        ) -> Any:
            context = Context(database_url, storage, ray_address)
            try:
                return command(context, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as error:
                found = user_error(error, context.safe_url)
                if found is None:
                    raise
                click.echo(f"Error: {found[0]}", err=True)
                raise click.exceptions.Exit(found[1]) from None
            finally:
                context.close()

        wrapped: Any = wrapper
        if needs_ray:
            wrapped = click.option(
                "--ray-address",
                envvar="RAY_ADDRESS",
                metavar="ADDR",
                help="Ray cluster to join (default $RAY_ADDRESS, else a local Ray; "
                "'local' always starts one).",
            )(wrapped)
        wrapped = click.option(
            "--storage",
            envvar="GNOMON_STORAGE",
            metavar="URL",
            help="Blob store for large checkpoints (default $GNOMON_STORAGE).",
        )(wrapped)
        wrapped = click.option(
            "--database-url",
            envvar="GNOMON_DATABASE_URL",
            metavar="URL",
            help="SQLAlchemy URL (default $GNOMON_DATABASE_URL, else SQLite in ~/.gnomon).",
        )(wrapped)
        return wrapped

    return decorate


def user_error(error: BaseException, database: str | None = None) -> tuple[str, int] | None:
    """The one line and exit code for an error a user can fix; None for a bug."""
    if isinstance(error, USAGE_ERRORS):
        return _message(error), EXIT_USAGE
    if isinstance(error, (sa.exc.ArgumentError, sa.exc.NoSuchModuleError)):
        return f"Invalid database URL {database or ''}: {_message(error)}".strip(), EXIT_USAGE
    if isinstance(error, DatabaseUnavailableError):
        return _message(error), EXIT_FAILED
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        reason = str(error.orig).strip().splitlines()[0] if error.orig else _message(error)
        return f"Cannot reach the database {database or ''}: {reason}", EXIT_FAILED
    if isinstance(error, WorkflowError):
        return _message(error), EXIT_FAILED
    if isinstance(error, (PermissionError, FileNotFoundError, IsADirectoryError)):
        return (
            f"Cannot open {getattr(error, 'filename', '') or 'a file'}: {error.strerror or error}",
            EXIT_FAILED,
        )
    return None


def _message(error: BaseException) -> str:
    text = str(getattr(error, "message", None) or error).strip().splitlines()
    return text[0] if text else type(error).__name__


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param k=v``: the value is JSON when it parses (``n=3``, ``ids=[1,2]``), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params
