"""The dashboard's server thread (``web.serving``): stopping it."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request

import pytest

from web import serve


def test_closing_the_server_ends_its_thread_cleanly_and_frees_its_port(make_app, caplog) -> None:
    raised: list[BaseException | None] = []
    before = threading.excepthook
    threading.excepthook = lambda args: raised.append(args.exc_value)
    try:
        for _ in range(20):
            server = serve(make_app(), "127.0.0.1", 0)
            with urllib.request.urlopen(server.url + "healthz", timeout=10) as answer:
                assert answer.status == 200
            server.close()

            assert not server.thread.is_alive()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        threading.excepthook = before
    assert raised == []
    # Nor in a request thread (waitress logs those): a request finishing as the server
    # closes pulls the loop's trigger.
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("waitress") and r.levelno >= logging.ERROR
    ] == []
