"""Running ``gnomon up`` in a subprocess for the restart and replica tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.waiting import eventually

#: The console script installed with the package.
GNOMON = str(Path(sys.executable).with_name("gnomon"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dags_folder(parent: Path, source: str, **names: object) -> Path:
    """``parent/dags`` holding ``flows.py``: ``source`` dedented, with ``names`` filled in."""
    folder = parent / "dags"
    folder.mkdir()
    (folder / "flows.py").write_text(textwrap.dedent(source.format(**names)))
    return folder


class GnomonUp:
    """``gnomon up`` in its own session, so the whole process group can be killed."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command`` replaces ``gnomon up`` (e.g. ``deploy/gnomon.sh``, which execs it)."""
        self.log = log
        environment = {**os.environ, **(env or {})}
        self._handle = open(log, "ab")  # noqa: SIM115 (open while the process runs)
        self.process = subprocess.Popen(
            [*(command or [GNOMON, "up"]), *args],
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        """Until the log shows ``text``; fails at once if the process exits first."""

        def printed() -> bool:
            if text in self.text():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"gnomon up exited ({self.process.returncode})")
            return False

        try:
            eventually(printed, timeout, what=repr(text), interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{self.text()[-3000:]}") from None

    def family(self) -> list[int]:
        """This process and all its descendants (Ray workers start sessions of their own)."""
        parents = _parents()
        family = [self.process.pid]
        for pid in family:
            family.extend(child for child, parent in parents.items() if parent == pid)
        return family

    def kill_hard(self) -> None:
        """kill -9 the process, the Ray it started, and everything else it spawned."""
        family = self.family()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill_hard()
        else:
            # Whatever the clean stop left behind in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._handle.close()

    def leftovers(self) -> list[int]:
        """Live (not zombie) processes still in this process group."""
        found = []
        for pid in _parents():
            try:
                if os.getpgid(pid) == self.process.pid and _state(pid) != "Z":
                    found.append(pid)
            except (ProcessLookupError, OSError):
                continue
        return found


def _parents() -> dict[int, int]:
    """pid -> parent pid, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
