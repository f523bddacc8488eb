"""Bounded waiting, and marks: files in which tasks note each time they run.

Tasks call these on Ray workers and in other processes (a ``gnomon up``, a crash script),
some of which cannot import ``tests``: a manager resuming a workflow from storage, a node
that never saw the checkout. So this module is pickled by value wherever it is imported,
like a dags file's code.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ray import cloudpickle

T = TypeVar("T")

#: The checkout. A subprocess that is to import this module needs it on its path.
REPO = Path(__file__).resolve().parents[1]


def eventually(
    probe: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def mark(marks: str | Path, name: str) -> int:
    """Note a run in ``marks/name`` (a line holding this process's pid); returns how many
    runs it notes, this one included."""
    path = os.path.join(marks, name)
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    with open(path) as handle:
        return len(handle.read().split())


def count(marks: str | Path, name: str) -> int:
    """How many runs ``marks/name`` notes (0 if none)."""
    path = Path(marks, name)
    return len(path.read_text().split()) if path.exists() else 0


def process_gone(pid: int) -> bool:
    """Whether no process of this host has ``pid`` any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def marked_by(marks: str | Path) -> set[int]:
    """The pid of every process that left a mark."""
    return {int(pid) for path in Path(marks).iterdir() for pid in path.read_text().split()}


def python_path() -> str:
    """``PYTHONPATH`` for a subprocess that imports this module (a script, a dags file)."""
    return os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


cloudpickle.register_pickle_by_value(sys.modules[__name__])
