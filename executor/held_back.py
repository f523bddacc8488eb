"""Chains of a continuation held back while another runs in the worker that expanded it.

A worker runs one ready chain of a continuation in place and holds the other ready ones
back (``HeldBack``): if the one it runs is still running after ``HOLD_BACK`` seconds, a
timer thread submits them all, so they start in parallel as they would have; if it ends
sooner, the worker takes the next in place too. A continuation of small tasks (a
recursion's last levels) then runs in one Ray call, where a call per task would cost
far more than the tasks, and one of long tasks starts at most ``HOLD_BACK`` later.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

#: How long a ready chain waits for the chain running in place before it is submitted.
HOLD_BACK = 0.005

T = TypeVar("T")


class Timers:
    """One daemon thread that calls functions at their deadlines."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, function: Callable[[], None]) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), function))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="gnomon-timers")
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, function = heapq.heappop(self._due)
            try:
                function()
            except Exception:  # HeldBack keeps its own errors; this is a bug
                log.exception("A timer's function failed")


#: The worker process's timers.
TIMERS = Timers()


class HeldBack(Generic[T]):
    """Ready chains held back while another runs in place, until ``settle``: submitted
    (``submit``, from the timer thread) if that takes longer than ``HOLD_BACK``."""

    def __init__(self, chains: list[T], submit: Callable[[T], object]) -> None:
        self._chains = chains
        self._submit = submit
        self._lock = threading.Lock()
        self._settled = False
        self._released = False
        self._error: BaseException | None = None
        if chains:
            TIMERS.call_later(HOLD_BACK, self.release)

    def release(self) -> None:
        """Submit the chains held back, unless they were settled first."""
        with self._lock:
            if self._settled or self._released:
                return
            self._released = True
            try:
                for chain in self._chains:
                    self._submit(chain)
            except BaseException as error:  # raised where the runner settles
                self._error = error

    def settle(self) -> list[T]:
        """Stop holding them back: the chains not submitted, to run in place or submit
        (none if they were submitted). Raises what submitting them raised."""
        with self._lock:
            self._settled = True
            if self._error is not None:
                raise self._error
            return [] if self._released else self._chains
