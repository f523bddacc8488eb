"""``workflow.Retry``: a task's retry policy, with backoff between attempts.

It generalises Ray's ``max_retries`` and ``retry_exceptions`` (which keep working as
they did: retries at once). With a policy, an attempt that fails with an error it covers
is tried again after a delay that grows by ``backoff`` from ``initial_s`` up to
``max_s``, each spread by ``jitter``. The wait holds no CPU: the worker gives its slot
back and the workflow manager waits, durably, as for ``workflow.sleep``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from executor.errors import InvalidInputError, InvalidTypeError


def _number(name: str, value: Any, lowest: float, inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidTypeError(f"Retry {name} must be a number, got {value!r}")
    if value < lowest or (not inclusive and value == lowest):
        bound = f">= {lowest:g}" if inclusive else f"> {lowest:g}"
        raise InvalidInputError(f"Retry {name} must be {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Retry:
    """Try a task up to ``max_attempts`` times in all when it raises one of ``on``
    (a worker dying and ``timeout_s`` count as failed attempts too). Before attempt
    ``n + 1`` it waits ``min(initial_s * backoff ** (n - 1), max_s)`` seconds, times a
    random factor within ``1 ± jitter``."""

    max_attempts: int = 3
    initial_s: float = 1.0
    backoff: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.1
    on: Any = (Exception,)

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise InvalidTypeError(f"Retry max_attempts must be an integer, got {attempts!r}")
        if attempts < 1:
            raise InvalidInputError(f"Retry max_attempts must be >= 1, got {attempts}")
        _number("initial_s", self.initial_s, 0)
        _number("backoff", self.backoff, 1)
        _number("max_s", self.max_s, 0)
        if self.jitter != 0:
            _number("jitter", self.jitter, 0)
            if self.jitter > 1:
                raise InvalidInputError(f"Retry jitter must be within [0, 1], got {self.jitter!r}")
        on = self.on if isinstance(self.on, (tuple, list)) else (self.on,)
        if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise InvalidTypeError(
                f"Retry on must be an exception class or a tuple of them, got {self.on!r}"
            )
        object.__setattr__(self, "on", tuple(on))

    def covers(self, error: BaseException) -> bool:
        return isinstance(error, self.on)

    def delay(self, failed: int) -> float:
        """Seconds to wait before the next attempt, after ``failed`` failed attempts."""
        try:
            base = min(self.initial_s * self.backoff ** max(failed - 1, 0), self.max_s)
        except OverflowError:
            base = self.max_s
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)
