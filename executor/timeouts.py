"""Task timeouts: stopping an attempt that runs past ``workflow.options(timeout_s=)``.

Two stages, both inside the worker running the attempt:

1. At the timeout, ``SIGALRM`` raises ``TaskTimeoutError`` in the task's thread (Ray
   runs a task in its worker's main thread). A blocking call (``time.sleep``, a socket
   read, a lock) is interrupted, so a hung HTTP call stops at once and the attempt
   fails like any other, by the task's retry policy.
2. Code that does not stop (it swallows the error, or is stuck in C code that never
   returns to Python) gets a grace of ``KILL_GRACE`` seconds more (at most its timeout
   again); then its worker process is killed. Ray runs the call again, and the death
   counts as a failed attempt (retried at once, not after a backoff).

Only the attempt's own run counts: waiting for a pool slot, a retry's backoff, sleeps
and events happen outside it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from executor.errors import TaskTimeoutError

#: Seconds a timed-out attempt has to stop after being interrupted, before its worker
#: is killed (or its timeout, if that is shorter).
KILL_GRACE = float(os.environ.get("GNOMON_TIMEOUT_KILL_GRACE", "5"))


@contextmanager
def time_limit(
    task_id: str, timeout_s: float | None, before_kill: Callable[[TaskTimeoutError], None]
) -> Iterator[None]:
    """Run the block under ``timeout_s``: interrupt it with ``TaskTimeoutError`` when it
    runs out, and past a grace more call ``before_kill`` (which records the failure) and
    kill this process."""
    if timeout_s is None:
        yield
        return
    grace = min(KILL_GRACE, timeout_s)
    armed = True
    in_main = threading.current_thread() is threading.main_thread()

    def interrupt(_signum: int, _frame: Any) -> None:
        if armed:
            raise TaskTimeoutError(task_id, timeout_s)

    def kill() -> None:
        if not armed:
            return
        error = TaskTimeoutError(
            task_id, timeout_s, f"it did not stop within {grace:g} s, so its worker was killed"
        )
        try:
            before_kill(error)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)

    previous: Any = None
    if in_main:
        previous = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    killer = threading.Timer(timeout_s + grace, kill)
    killer.daemon = True
    killer.start()
    try:
        yield
    finally:
        armed = False
        killer.cancel()
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
