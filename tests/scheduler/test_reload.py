"""``gnomon up`` picks up edits to its dags folder while it runs: a new schedule, a
changed cron, a removed schedule, and a broken file that keeps its last good version."""

from __future__ import annotations

import json
import textwrap
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.scheduler.processes import GnomonUp, free_port
from tests.waiting import eventually

pytestmark = pytest.mark.slow

START_SECONDS = 150
TOKEN = "reload-token-0123456789"

FLOW = """
import scheduler

@scheduler.register(name={name!r}, {trigger})
def flow(run):
    return None
"""


def _write(path: Path, name: str, trigger: str) -> None:
    path.write_text(textwrap.dedent(FLOW.format(name=name, trigger=trigger)))


def _listing(port: int) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/schedules",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def test_gnomon_up_reloads_its_dags_folder_while_it_runs(tmp_path):
    name = f"reload_{uuid.uuid4().hex[:8]}"
    dags = tmp_path / "dags"
    dags.mkdir()
    flows, more = dags / "flows.py", dags / "more.py"
    _write(flows, name, "interval=3600")
    port = free_port()
    process = GnomonUp(
        [
            *("--dags", str(dags), "--port", str(port), "--ray-address", "local"),
            *("--database-url", f"sqlite:///{tmp_path / 'gnomon.db'}"),
            *("--storage", str(tmp_path / "blobs")),
        ],
        tmp_path / "up.log",
        {"GNOMON_HOME": str(tmp_path / "home"), "GNOMON_API_TOKEN": TOKEN},
    )

    def trigger_of(schedule: str):
        return lambda: next(
            (s["trigger"] for s in _listing(port)["schedules"] if s["name"] == schedule), None
        )

    try:
        process.wait_for("Press Ctrl-C to stop.", START_SECONDS)
        assert trigger_of(name)() == "every 3600s"

        _write(flows, name, 'cron="*/5 * * * *"')
        _write(more, f"{name}_more", "interval=60")
        eventually(lambda: trigger_of(name)() == "cron */5 * * * * (UTC)", 30, "the new cron")
        eventually(trigger_of(f"{name}_more"), 30, "the new schedule")

        more.unlink()
        eventually(lambda: trigger_of(f"{name}_more")() is None, 30, "the removal")

        flows.write_text(flows.read_text() + "\nraise RuntimeError('half an edit')\n")
        listing = eventually(
            lambda: (found := _listing(port))["import_errors"] and found, 30, "the error"
        )
        assert listing["import_errors"] == {
            str(flows.resolve()): "RuntimeError: half an edit (at flows.py, line 8)"
        }
        assert trigger_of(name)() == "cron */5 * * * * (UTC)"  # the last good version
        assert "Traceback" not in process.text()
    finally:
        process.close()
