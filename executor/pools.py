"""Concurrency pools: names, rates, and the slots a worker process holds.

A pool is a named limit kept in the database: at most ``slots`` of its tasks run at
once, across every workflow, process and node on the database, and, with a rate, at
most ``limit`` of them start in any ``period`` seconds. A task joins one with
``workflow.options(pool=...)``. Its slot is taken, in the first of these that applies:
when its run is submitted, with the slots of the run's other tasks that can start at
once (``RayLauncher.take_slots``); from the task before it in its Ray call, which hands
its slot on when nobody waits (``worker.Slot``); or by its worker before running it. When
none is free, the worker hands the wait to the workflow manager and gives its CPU back.

A held slot is a lease: the process holding it renews it (``HeldSlots``), so a slot
whose process died comes back once the lease runs out, at once on the same host.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from executor.config import StoreConfig, handles
from executor.errors import InvalidInputError, InvalidTypeError
from executor.store import LEASE_TTL, Rate, owner_id

log = logging.getLogger(__name__)

#: How long a slot stays held without being renewed (its holder's process is gone).
POOL_LEASE_TTL = float(os.environ.get("GNOMON_POOL_LEASE_TTL", str(LEASE_TTL)))
#: The largest pool, and the largest number of starts per period (a 32-bit column).
MAX_SLOTS = 1_000_000_000
#: The longest rate period: a year.
MAX_PERIOD = 366 * 86400.0
#: Pool names go in URLs (``/api/v1/pools/<name>``) and on command lines.
MAX_POOL_NAME = 100
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]*)\s*")


def check_pool_name(name: Any) -> str:
    """A pool name, or a one-line ``InvalidInputError``: letters, digits and ``_ . : -``,
    up to 100 characters."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"A pool name must be a string, got {name!r}")
    if len(name) > MAX_POOL_NAME or not _POOL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"Invalid pool name {name!r}: use 1 to {MAX_POOL_NAME} letters, digits, '_', "
            "'.', ':' or '-' (no spaces), starting with a letter or digit"
        )
    return name


def check_slots(slots: Any) -> int:
    """A pool's size: 0 (paused) or more."""
    if isinstance(slots, bool) or not isinstance(slots, int):
        raise InvalidTypeError(f"A pool's slots must be an integer, got {slots!r}")
    if not 0 <= slots <= MAX_SLOTS:
        raise InvalidInputError(
            f"A pool's slots must be from 0 (paused) to {MAX_SLOTS:,}, got {slots}"
        )
    return slots


def parse_rate(text: Any) -> Rate:
    """``N/period``: ``5/s``, ``100/min``, ``10/30s``, ``2/h``, ``1/day``."""
    if isinstance(text, Rate):
        return text
    if not isinstance(text, str):
        raise InvalidTypeError(f"A rate is text such as '5/s', got {text!r}")
    found = _RATE.fullmatch(text.lower())
    unit = _UNITS.get(found.group(3) or "s") if found and any(found.group(2, 3)) else None
    if found is None or unit is None:
        raise InvalidInputError(
            f"Invalid rate {text!r}: write N/period, such as 5/s, 100/min, 10/30s or 2/h"
        )
    limit = int(found.group(1))
    period = float(found.group(2) or 1) * unit
    if limit < 1 or period <= 0:
        raise InvalidInputError(f"Invalid rate {text!r}: it needs at least 1 start per period")
    if limit > MAX_SLOTS or period > MAX_PERIOD:
        raise InvalidInputError(
            f"Invalid rate {text!r}: at most {MAX_SLOTS:,} starts per at most a year"
        )
    return Rate(limit=limit, period_s=period)


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidTypeError(f"priority must be an integer, got {priority!r}")
    if abs(priority) >= 1 << 31:
        raise InvalidInputError(f"priority must fit in 32 bits, got {priority}")
    return priority


class HeldSlots:
    """The slots held by tasks running in this process, renewed in the background."""

    def __init__(self, ttl: float = POOL_LEASE_TTL) -> None:
        self.ttl = ttl
        self._held: dict[StoreConfig, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def owner(self) -> str:
        """This process as a slot's holder (``owner_id`` names the host and pid)."""
        return owner_id("slots")

    def hold(self, config: StoreConfig) -> None:
        with self._lock:
            self._held[config] = self._held.get(config, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew, daemon=True, name="gnomon-pool-slots"
                )
                self._thread.start()

    def let_go(self, config: StoreConfig) -> None:
        with self._lock:
            left = self._held.get(config, 0) - 1
            if left > 0:
                self._held[config] = left
            else:
                self._held.pop(config, None)

    def _renew(self) -> None:
        while True:
            self._wake.wait(timeout=max(self.ttl / 3, 0.1))
            with self._lock:
                configs = list(self._held)
            for config in configs:
                try:
                    handles(config).store.renew_slots(self.owner, self.ttl)
                except Exception:  # the database may be restarting; the next round retries
                    log.warning("Could not renew this process's pool slots", exc_info=True)


#: This process's slots.
HELD = HeldSlots()
