"""Bounded waiting and side-effect marks for the scheduler tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def mark(marks: str, name: str) -> int:
    """Append a line to ``marks/name``; returns how many times it has been marked."""
    path = os.path.join(marks, name)
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    with open(path) as handle:
        return len(handle.read().split())


def count(marks: Path, name: str) -> int:
    path = marks / name
    return len(path.read_text().split()) if path.exists() else 0
