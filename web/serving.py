"""Serving the dashboard on waitress, the production WSGI server ``gnomon up`` runs it on."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from waitress import create_server

from web.errors import InsecureBindError

#: Request threads: enough for a few operators' tabs polling at once.
THREADS = 8


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

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def close(self) -> None:
        if not self.thread.is_alive():
            self.server.close()
            return
        # Request threads first: one finishing a request pulls the loop's trigger,
        # which must still be open then.
        self.server.task_dispatcher.shutdown(timeout=5)
        # Then the sockets, closed by the loop thread, between two selects: closed from
        # here, they could go while that thread selects on them (EBADF there).
        self.server.trigger.pull_trigger(self.server.close)
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
    thread = threading.Thread(target=server.run, name="gnomon-dashboard", daemon=True)
    thread.start()
    return DashboardServer(server, thread, host, int(server.effective_port))
