"""The local PostgreSQL server, for fault tests that restart it mid-run.

A restart drops every connection to the server, other sessions' included: run these
tests when nothing else uses it.
"""

from __future__ import annotations

import os
import subprocess


def restart_postgres() -> None:
    """Restart the newest cluster of the local server (stop, then start), blocking."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
