"""Workflow scripts run in subprocesses, for the tests that kill a workflow's driver and
resume the workflow in the pytest process, which never imports the script.

Each script runs in a session of its own, so the Ray it starts can be killed with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import python_path


def start(
    script: str, tmp_path: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Run ``script`` with ``args``; it starts a local Ray unless ``env`` names one."""
    path = tmp_path / "script.py"
    path.write_text(script)
    child_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    child_env["PYTHONPATH"] = python_path()  # scripts import tests.waiting
    child_env.update(env or {})
    with (tmp_path / "script.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, str(path), *args],
            cwd=tmp_path,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the script's whole process group (the Ray it started too), and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def output(tmp_path: Path) -> str:
    """The end of what the script printed."""
    path = tmp_path / "script.log"
    return path.read_text()[-4000:] if path.exists() else ""
