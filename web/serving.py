"""Serving the dashboard on waitress, the production WSGI server ``gnomon up`` runs it on."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from waitress import create_server, wasyncore

from web.errors import InsecureBindError

#: Request threads: enough for a few operators' tabs polling at once.
THREADS = 8
#: The longest the server's loop selects before it looks whether to stop.
STOP_POLL = 0.1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class DashboardServer:
    """A running server: ``url`` to print, ``close()`` to stop it."""

    server: Any
    thread: threading.Thread
    host: str
    port: int
    stopping: threading.Event

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def close(self) -> None:
        if not self.thread.is_alive():
            self.server.close()
            return
        # Request threads first: one finishing a request pulls the loop's trigger,
        # which must still be open then. Then the loop closes the sockets itself
        # (``_serve``), between two selects: closed from here, they could go while it
        # selects on them.
        self.server.task_dispatcher.shutdown(timeout=5)
        self.stopping.set()
        self.thread.join(timeout=5)


def serve(app: Flask, host: str = "127.0.0.1", port: int = 8080) -> DashboardServer:
    """Start serving ``app`` in a background thread; port 0 picks a free port.

    Refuses (``InsecureBindError``) to listen beyond loopback unless the app has an
    ``API_TOKEN``: an open dashboard can run, cancel and delete anyone's workflows.
    """
    if not is_loopback(host) and not app.config.get("API_TOKEN"):
        raise InsecureBindError(
            f"Refusing to serve the dashboard on {host} without an API token; "
            "set GNOMON_API_TOKEN or bind to 127.0.0.1"
        )
    server = create_server(app, host=host, port=port, threads=THREADS, ident="gnomon")
    stopping = threading.Event()
    thread = threading.Thread(
        target=_serve, args=(server, stopping), name="gnomon-dashboard", daemon=True
    )
    thread.start()
    return DashboardServer(server, thread, host, int(server.effective_port), stopping)


def _serve(server: Any, stopping: threading.Event) -> None:
    """waitress's loop (``server.run``), one select at a time until ``stopping`` is set;
    then every socket it serves closes in this thread."""
    try:
        while not stopping.is_set() and server._map:
            wasyncore.loop(
                timeout=STOP_POLL, use_poll=server.adj.asyncore_use_poll, map=server._map, count=1
            )
    finally:
        wasyncore.close_all(server._map)
