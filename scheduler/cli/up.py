"""``gnomon up``: Ray, migrations, the scheduler and the dashboard, in one process."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from executor.config import DATA_DIR
from scheduler.alerts import check_notifier, default_notifiers
from scheduler.cli.context import Context, database_options
from scheduler.errors import InvalidTargetError, ScheduleNotFoundError
from scheduler.loader import DagsFolder, load_examples
from scheduler.registry import REGISTRY

log = logging.getLogger(__name__)

#: Where a generated dashboard token is kept (mode 0600) when $GNOMON_API_TOKEN is unset.
TOKEN_FILE = DATA_DIR / "api_token"

#: Seconds a stop (Ctrl-C, SIGTERM) may take before gnomon up leaves what is still
#: stopping and exits. Everything it leaves is durable: runs it was submitting are in the
#: database or are ticks the next start fires again; running workflows resume. Under a
#: supervisor's usual grace period (Docker waits 10 s by default; compose and Kubernetes
#: give gnomon more), so a stop is never a SIGKILL.
STOP_SECONDS = 10.0
#: Seconds between looks at the dags folders for edited, added and removed files.
RELOAD_SECONDS = float(os.environ.get("GNOMON_DAGS_RELOAD_SECONDS", "1"))


@click.command()
@click.option(
    "--dags",
    "dags",
    multiple=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Import every module in DIR and schedule what it registers.",
)
@click.option("--examples", is_flag=True, help="Register the bundled example workflows.")
@click.option(
    "--notify",
    "notify",
    multiple=True,
    metavar="URL",
    help="Notifier for every schedule (webhook+https://, slack+https://, mailto:); "
    "repeatable; adds to $GNOMON_NOTIFY.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Dashboard port."
)
@database_options(needs_ray=True)
def up(
    gn: Context,
    dags: tuple[str, ...],
    examples: bool,
    notify: tuple[str, ...],
    host: str,
    port: int,
) -> None:
    """Start (or join) Ray, migrate, and run the scheduler and the dashboard.

    Stops cleanly on Ctrl-C or SIGTERM. Running workflows are left to the cluster (or,
    with a local Ray, resumed by the next start).
    """
    _configure_logging()
    gn.store()  # an unreachable database fails here, before Ray starts
    notifiers = [*default_notifiers(), *(check_notifier(url) for url in notify)]
    folders = [DagsFolder(folder, REGISTRY) for folder in dags]
    for folder in folders:
        _report(str(folder.folder), folder.refresh())
    if examples:
        _report("examples", load_examples(REGISTRY))

    import ray

    from scheduler.service import SchedulerService

    gn.workflow(start_node=True)  # joining from a host with no node: one of its own
    service = SchedulerService(
        REGISTRY,
        gn.config.database_url,
        storage=gn.config.storage,
        notify=notifiers,
        base_url=os.environ.get("GNOMON_BASE_URL"),
    )
    stop = _stop_on_signals()
    service.start()
    server = None
    try:
        server, url = _serve_dashboard(gn, service, host, port)
        service.dispatcher.base_url = service.dispatcher.base_url or server.url
        address = ray.get_runtime_context().gcs_address
        click.echo(
            f"Gnomon is up: {len(REGISTRY)} schedule(s), database {gn.safe_url}, Ray {address}"
        )
        click.echo(f"Dashboard: {url}")
        click.echo(f"Other gnomon commands join this Ray with: export RAY_ADDRESS={address}")
        click.echo("Press Ctrl-C to stop.")
        _wait_for(stop, every=RELOAD_SECONDS, do=lambda: _reload(folders, service))
        click.echo("Stopping...", err=True)
    finally:
        stopped = _exit_unless_stopped(STOP_SECONDS)
        if server is not None:
            _step("the dashboard", server.close)
        _step("the scheduler", service.stop)
        _step("Ray", ray.shutdown)
        stopped.set()
    click.echo("Stopped.", err=True)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _reload(folders: list[DagsFolder], service: Any) -> None:
    """Pick up edited, added and removed dags files: the scheduler adds, changes and
    drops jobs to match. Runs already submitted keep the code they started with."""
    for folder in folders:
        try:
            result = folder.refresh()
        except InvalidTargetError as error:  # the folder itself went away
            log.warning("%s", error)
            continue
        if not (result.modules or result.removed or result.errors):
            continue
        _report(str(folder.folder), result)
        for name in result.removed:
            with contextlib.suppress(ScheduleNotFoundError):
                service.remove(name)
            log.info("Schedule %s is no longer registered", name)
        if result.modules:
            service.sync()


def _report(source: str, result: Any) -> None:
    for path, message in result.errors.items():
        click.echo(f"Error: dags file {path} did not load: {message}", err=True)
    log.info("Loaded %d schedule(s) from %s", len(result.schedules), source)


#: Signals this close to the first are the same stop request: a terminal's Ctrl-C reaches
#: the whole process group, and a supervisor and ``timeout`` may both forward theirs.
SIGNAL_BURST_SECONDS = 1.0


class _StopRequest:
    """Set by Ctrl-C or SIGTERM.

    Plain attributes, not a ``threading.Event``: a signal handler runs between the main
    thread's bytecodes, and ``Event.set`` takes a lock that the main thread (or the
    previous handler, when two signals come together) may hold. Seen once: ``timeout``
    and ``pkill`` each sent SIGINT, the second handler waited forever on that lock, and
    the process then ignored every signal but SIGKILL.
    """

    def __init__(self) -> None:
        self.requested = False
        self.first_at = 0.0


def _stop_on_signals() -> _StopRequest:
    """Ctrl-C and SIGTERM request a clean stop; another one later than the first
    burst stops at once (``KeyboardInterrupt``), for an operator who will not wait."""
    stop = _StopRequest()

    def handle(signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if not stop.requested:
            stop.requested, stop.first_at = True, now
        elif now - stop.first_at > SIGNAL_BURST_SECONDS:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _wait_for(stop: _StopRequest, every: float, do: Callable[[], None]) -> None:
    """Sleep until a stop is requested, calling ``do`` every ``every`` seconds. In the
    main thread, so a dags file's import is bounded by its ``IMPORT_TIMEOUT`` alarm."""
    due = time.monotonic() + every
    while not stop.requested:
        time.sleep(0.2)
        if time.monotonic() >= due and not stop.requested:
            try:
                do()
            except Exception:
                log.exception("Reloading the dags folders failed")
            due = time.monotonic() + every


def _step(what: str, stop: Callable[[], None]) -> None:
    """One part of the stop; a failure is logged, and the rest still stop."""
    log.info("Stopping %s", what)
    try:
        stop()
    except Exception:
        log.exception("Stopping %s failed", what)


def _exit_unless_stopped(seconds: float) -> threading.Event:
    """Arm a watchdog: unless the returned event is set within ``seconds``, it ends the
    process there, whatever is still stopping (a thread pool draining its queue, a Ray
    shutdown on a loaded machine)."""
    stopped = threading.Event()

    def expire() -> None:
        if stopped.wait(seconds):
            return
        log.warning("Stopping took more than %g s; exiting without waiting further", seconds)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    threading.Thread(target=expire, name="gnomon-stop-deadline", daemon=True).start()
    return stopped


def _serve_dashboard(gn: Context, service: Any, host: str, port: int) -> tuple[Any, str]:
    """Serve the dashboard (``web``) with waitress: (server, login URL)."""
    from web import create_app, serve

    token = api_token()
    app = create_app(
        {
            "DATABASE_URL": gn.config.database_url,
            "STORAGE": gn.config.storage,
            "API_TOKEN": token,
            "SCHEDULER": service,
        }
    )
    try:
        server = serve(app, host, port)
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror}") from None
    return server, f"{server.url}?token={token}"


def api_token() -> str:
    """``$GNOMON_API_TOKEN``, else a token generated once into the data directory."""
    token = os.environ.get("GNOMON_API_TOKEN")
    if token:
        return token
    path = Path(TOKEN_FILE)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    # Written aside, then linked into place: two processes starting at once (replicas)
    # must agree on one token, and neither may read a half-written file.
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    try:
        os.link(draft, path)
    except FileExistsError:
        token = path.read_text().strip()
    finally:
        draft.unlink()
    os.environ["GNOMON_API_TOKEN"] = token
    return token
