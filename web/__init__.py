"""Gnomon's operator dashboard and REST API (Flask, htmx).

from web import create_app, serve
server = serve(create_app({"DATABASE_URL": url, "SCHEDULER": service}), "127.0.0.1", 8080)
"""

from web.app import create_app
from web.serving import DashboardServer, serve

__all__ = ["DashboardServer", "create_app", "serve"]
