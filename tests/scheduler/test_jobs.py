"""The APScheduler plumbing on its own: the polling scheduler and its batching job store."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from scheduler import jobs
from tests.waiting import eventually

FIRED: list[float] = []


def fire() -> None:
    FIRED.append(time.monotonic())


def test_a_database_error_in_a_pass_does_not_stop_the_scheduler(tmp_path: Path) -> None:
    # Given a polling scheduler on the batching job store, with a job due every 0.2 s
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    store = jobs.jobstore_for(engine)
    scheduler = jobs.PollingScheduler(
        0.1, timezone=timezone.utc, executors={"default": ThreadPoolExecutor(2)}
    )
    scheduler.add_jobstore(store, "default")
    FIRED.clear()
    failures = []
    real_flush = store.flush

    def flush_once_failing() -> None:
        if store._deferred and not failures:
            failures.append(threading.current_thread().name)
            raise sa.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        real_flush()

    store.flush = flush_once_failing  # type: ignore[method-assign]
    scheduler.start()
    try:
        scheduler.add_job(fire, "interval", seconds=0.2, id="tick", jobstore="default")

        # When saving a pass's fired jobs fails once (the database went away)
        eventually(lambda: failures, timeout=10, what="the failing save")
        fired_then = len(FIRED)

        # Then the scheduler keeps firing, and saves again: read straight from the table,
        # since the store's own reads would save what is pending first
        eventually(lambda: len(FIRED) >= fired_then + 3, timeout=10, what="ticks after it")
        after = time.time()

        def saved_next_run() -> float:
            with engine.connect() as conn:
                column, key = store.jobs_t.c.next_run_time, store.jobs_t.c.id
                return conn.execute(sa.select(column).where(key == "tick")).scalar_one()

        eventually(lambda: saved_next_run() > after, timeout=10, what="a save after it")
        assert scheduler.get_job("tick") is not None
    finally:
        scheduler.shutdown(wait=False)
        engine.dispose()


def test_a_job_waiting_for_the_job_stores_lets_the_scheduler_shut_down() -> None:
    # Given a running job that will want the job stores lock
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.start()
    started, go_on = threading.Event(), threading.Event()
    seen: list[bool] = []

    def job() -> None:
        started.set()
        go_on.wait(10)
        with jobs.job_stores_locked(scheduler) as locked:
            seen.append(locked)

    # An interval job, as the housekeeping passes are (a one-off one is removed after
    # its run, which races the shutdown inside APScheduler's own loop).
    scheduler.add_job(job, "interval", hours=1, next_run_time=datetime.now(timezone.utc))
    assert started.wait(10)

    # When the scheduler shuts down, waiting for that job while it holds the lock
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
    stopper.start()
    eventually(lambda: not _free(scheduler._jobstores_lock), what="shutdown holding the lock")
    go_on.set()

    # Then the job gives the lock up, and the shutdown ends
    stopper.join(timeout=10)
    assert not stopper.is_alive(), "the shutdown waits for ever"
    assert seen == [False]


def _free(lock: Any) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False
