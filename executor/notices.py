"""RUNNING marks and live logs of the tasks running in a worker, written in batches.

A task that finishes before its mark is flushed records its start in its finish write
instead, so a short task costs one transaction, not two. A running task's log is written
about once a second while it changes, so the dashboard can tail it. Marks and live logs
are advisory: a batch that cannot be written is logged and dropped, and the task's own
finish (or failure) records its start and its log.
"""

from __future__ import annotations

import logging
import threading
import time

from executor.config import StoreConfig, handles
from executor.logs import AttemptLog
from executor.stages import TaskContext

log = logging.getLogger(__name__)

_Key = tuple[StoreConfig, str, str]


class StartNotices:
    #: How long a start may wait before it is written.
    DELAY = 0.2
    #: How often running tasks' logs are written while they change.
    LOG_INTERVAL = 1.0

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self._pending: dict[_Key, float] = {}
        self._logs: dict[_Key, AttemptLog] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, ctx: TaskContext, at: float) -> None:
        with self._lock:
            self._pending[(ctx.config, ctx.workflow_id, ctx.task_id)] = at
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, daemon=True, name="gnomon-start-notices"
                )
                self._thread.start()
        self._wake.set()

    def watch(self, ctx: TaskContext, attempt: AttemptLog) -> None:
        with self._lock:
            self._logs[(ctx.config, ctx.workflow_id, ctx.task_id)] = attempt

    def finished(self, ctx: TaskContext) -> bool:
        """Forget the task's start and live log; True if its start had been written."""
        key = (ctx.config, ctx.workflow_id, ctx.task_id)
        with self._flushing, self._lock:
            self._logs.pop(key, None)
            return self._pending.pop(key, None) is None

    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=self.LOG_INTERVAL if self._logs else None)
            time.sleep(self.delay)
            self._wake.clear()
            with self._flushing:
                self.flush()

    def flush(self) -> None:
        """Write the pending marks and the changed logs, one transaction per workflow
        for marks and one per database for logs."""
        with self._lock:
            batch, self._pending = self._pending, {}
            logs = [(key, attempt) for key, attempt in self._logs.items() if attempt.dirty]
        starts: dict[tuple[StoreConfig, str], list[tuple[str, float]]] = {}
        for (config, workflow_id, task_id), at in batch.items():
            starts.setdefault((config, workflow_id), []).append((task_id, at))
        live: dict[StoreConfig, list[tuple[str, str, float, str]]] = {}
        for (config, workflow_id, task_id), attempt in logs:
            live.setdefault(config, []).append(
                (workflow_id, task_id, attempt.started_at, attempt.text())
            )
        for (config, workflow_id), started in starts.items():
            try:
                handles(config).store.tasks_started(workflow_id, started)
            except Exception:
                log.warning(
                    "Could not mark %d task(s) of %s RUNNING; their finish records the start",
                    len(started),
                    workflow_id,
                    exc_info=True,
                )
        for config, entries in live.items():
            try:
                handles(config).store.save_logs(entries)
            except Exception:
                log.warning("Could not write %d live log(s)", len(entries), exc_info=True)


#: The worker process's notices.
NOTICES = StartNotices()
