"""Following a run to its end with a live progress bar of its tasks (on stderr)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, TextIO

from executor.errors import WorkflowNotFoundError
from executor.status import ACTIVE, TaskStatus
from executor.store import SqlStore, TaskRecord, WorkflowRecord
from scheduler.errors import SchedulerError

#: Seconds between reads of the run's tasks.
POLL_SECONDS = 0.2
#: Tasks whose own work is done (a CONTINUED task handed the rest to its continuation).
_DONE = (TaskStatus.SUCCESSFUL, TaskStatus.CONTINUED)


def tally(tasks: list[TaskRecord]) -> tuple[int, int, int]:
    """(done, total, failed)."""
    done = sum(task.status in _DONE for task in tasks)
    failed = sum(task.status == TaskStatus.FAILED for task in tasks)
    return done, len(tasks), failed


class ProgressBar:
    """``[#######.......] 7/12 tasks, 0 failed  RUNNING``; redrawn in place on a terminal,
    a new line per change otherwise (logs, CI)."""

    WIDTH = 28

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._last: tuple[Any, ...] | None = None

    def update(self, done: int, total: int, failed: int, status: str) -> None:
        state = (done, total, failed, status)
        if state == self._last:
            return
        self._last = state
        filled = int(self.WIDTH * done / total) if total else 0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = f"[{bar}] {done}/{total} tasks, {failed} failed  {status}"
        if self.interactive:
            self.stream.write(f"\r{text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


class RunNotStartedError(SchedulerError):
    def __init__(self, workflow_id: str, seconds: float) -> None:
        super().__init__(
            f"No scheduler started {workflow_id!r} within {seconds:.0f}s; "
            f"is `gnomon up` running with that schedule registered?"
        )


def follow(
    store: SqlStore,
    workflow_id: str,
    ref: Any = None,
    *,
    stream: TextIO | None = None,
    appear_within: float | None = None,
) -> WorkflowRecord:
    """Draw progress until the run is no longer active; return its final record.

    With ``ref`` (a run submitted here) the ref is awaited too, so its error is read;
    ``appear_within`` bounds the wait for a run another process is about to create.
    """
    import ray

    bar = ProgressBar(stream)
    deadline = None if appear_within is None else time.monotonic() + appear_within
    try:
        while True:
            try:
                record = store.get_workflow(workflow_id)
            except WorkflowNotFoundError:
                if deadline is None:
                    raise
                if time.monotonic() > deadline:
                    raise RunNotStartedError(workflow_id, appear_within or 0) from None
                time.sleep(POLL_SECONDS)
                continue
            deadline = None
            bar.update(*tally(store.load_tasks(workflow_id)), record.status.value)
            # A resumed run reads FAILED or RESUMABLE until its manager takes it: with a
            # ref, the run has ended only when the ref has resolved too.
            ended = ref is None or ray.wait([ref], timeout=0, fetch_local=False)[0]
            if record.status not in ACTIVE and ended:
                break
            if ref is not None:
                ray.wait([ref], timeout=POLL_SECONDS, fetch_local=False)
            else:
                time.sleep(POLL_SECONDS)
    finally:
        bar.close()
    if ref is not None:
        # The record says how it ended; this only marks the error read.
        with contextlib.suppress(Exception):
            ray.get(ref, timeout=5)
    return record
