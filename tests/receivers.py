"""Notification receivers for tests and benchmarks: a local HTTP server that records every
POST (or answers 500, or hangs, per path), and a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]
    at: float


@dataclass
class WebhookReceiver:
    """POSTs to ``/ok...`` are recorded and answered 204; ``/fail...`` get a 500 (and are
    recorded too); ``/hang...`` are held until ``close``."""

    port: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._closed = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(size)
                try:
                    body = json.loads(data)
                except ValueError:
                    body = data.decode(errors="replace")
                receiver.received.append(
                    Received(self.path, body, dict(self.headers.items()), time.time())
                )
                if self.path.startswith("/hang"):
                    receiver._closed.wait(60)
                    return
                self.send_response(500 if self.path.startswith("/fail") else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/ok") -> str:
        return f"webhook+http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()


class MailReceiver:
    """An SMTP server on 127.0.0.1 (``port`` 0: a free one) recording each message."""

    def __init__(self, port: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                from email import message_from_bytes

                receiver.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.port = port or free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?from=gnomon@example.com"

    def about(self, workflow_id: str) -> list[Any]:
        """The messages about one run: the outbox on a shared test database also holds
        other tests' undelivered mail, which any delivery loop may send here."""
        return [m for m in self.messages if workflow_id in str(m["Subject"])]

    def close(self) -> None:
        self._controller.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
