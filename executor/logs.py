"""Task logs: each attempt's stdout, stderr and ``logging`` records, bounded and stored.

While a task runs, its output is teed (Ray still streams it to the driver) into a buffer
that keeps the last ``LIMIT`` bytes. The buffer is written with the task's finish (or
failure) in the same transaction, and every second while it runs, so the dashboard can
tail it live.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: The most log text kept per attempt; older output is dropped first.
LIMIT = 1 << 20
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class AttemptLog:
    """The bounded text of one attempt; written from the task thread, read by the flusher."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._chunks: deque[str] = deque()
        self._size = 0
        self._dropped = False
        self._lock = threading.Lock()
        #: Set when text arrived since the last flush.
        self.dirty = False

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size > LIMIT and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())
                self._dropped = True
            if self._size > LIMIT:
                only = self._chunks.pop()[-LIMIT:]
                self._chunks.append(only)
                self._size = len(only)
                self._dropped = True
            self.dirty = True

    def text(self) -> str:
        with self._lock:
            self.dirty = False
            body = "".join(self._chunks)
        return ("[earlier output dropped: over 1 MiB]\n" + body) if self._dropped else body


class _Tee:
    def __init__(self, stream: TextIO, log: AttemptLog) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


class _Handler(logging.Handler):
    def __init__(self, log: AttemptLog) -> None:
        super().__init__(logging.INFO)
        self._log = log
        self.setFormatter(_FORMAT)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.write(self.format(record) + "\n")
        except Exception:  # a log line must never fail the task
            self.handleError(record)


@contextmanager
def capture(log: AttemptLog) -> Iterator[AttemptLog]:
    """Tee stdout/stderr and INFO+ log records of the current task into ``log``.

    Ray runs one task at a time per worker process, so swapping the process-wide streams
    is safe.
    """
    out, err = sys.stdout, sys.stderr
    root = logging.getLogger()
    handler = _Handler(log)
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)  # type: ignore[assignment]
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        # Left at INFO afterwards: setLevel clears every logger's cache, which cost more
        # than a short task's own work when done twice per task.
        root.setLevel(logging.INFO)
    try:
        yield log
    finally:
        sys.stdout, sys.stderr = out, err
        root.removeHandler(handler)
