"""Delivering the outbox: the scheduler service's notification loop.

A thread of its own claims due notifications (under a lease, so replicas share the work
and a killed scheduler's claims come back) and hands each to a pool of senders. A
notifier that hangs or fails holds at most ``PER_NOTIFIER`` senders and retries on its
own backoff; the scheduler, the workers and every other notifier go on. Nothing is lost
to a crash: a notification leaves the outbox only as delivered, or as failed after
``MAX_ATTEMPTS``, and both are visible on the run's page.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from executor.errors import WorkflowNotFoundError, one_line
from executor.store import Store
from executor.store.leases import owner_id
from executor.store.records import NotificationRecord, mask_target
from scheduler.alerts import CALLBACK
from scheduler.notifiers import DeliveryError, run_info, send
from scheduler.registry import Registry

log = logging.getLogger(__name__)

#: Seconds between looks at the outbox when nothing woke the loop.
POLL = float(os.environ.get("GNOMON_NOTIFY_POLL", "0.2"))
#: Senders at once, and at most this many of them on one notifier.
SENDERS = int(os.environ.get("GNOMON_NOTIFY_SENDERS", "8"))
PER_NOTIFIER = 2
#: Seconds a claim lasts: longer than a send may take (``GNOMON_NOTIFY_TIMEOUT``).
LEASE = float(os.environ.get("GNOMON_NOTIFY_LEASE", "60"))
#: Attempts before a notification is given up as failed.
MAX_ATTEMPTS = int(os.environ.get("GNOMON_NOTIFY_ATTEMPTS", "10"))
#: The first retry's wait, doubled each attempt up to ``BACKOFF_MAX`` (plus up to 10%).
BACKOFF = float(os.environ.get("GNOMON_NOTIFY_BACKOFF", "2"))
BACKOFF_MAX = 300.0


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return min(BACKOFF * 2 ** max(attempts - 1, 0), BACKOFF_MAX) * (1 + random.random() / 10)


class Dispatcher:
    """Delivers ``store``'s outbox; callbacks of the schedules in ``registry``."""

    def __init__(self, store: Store, registry: Registry, base_url: str | None = None) -> None:
        self.store = store
        self.registry = registry
        #: The dashboard's address, for the run links in messages.
        self.base_url = base_url
        self.owner = owner_id(f"notify-{uuid.uuid4().hex[:8]}")
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="gnomon-notify")
        self._busy: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Attempts that failed, since this process started (for ``/metrics``).
        self.failed_attempts = 0
        self.delivered = 0

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self._loop, name="gnomon-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """Look at the outbox now (an outcome was just written here)."""
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            claimed: list[NotificationRecord] = []
            try:
                claimed = self._claim()
            except Exception as error:  # the database may be restarting: look again soon
                log.warning("Could not read the outbox: %s", one_line(error))
            for notification in claimed:
                self._pool.submit(self._deliver, notification)
            if not claimed:
                self._wake.wait(POLL)
                self._wake.clear()

    def _claim(self) -> list[NotificationRecord]:
        with self._lock:
            free = SENDERS - sum(self._busy.values())
            busy = [key for key, count in self._busy.items() if count >= PER_NOTIFIER]
        if free <= 0:
            return []
        claimed = self.store.claim_notifications(
            self.owner, free, LEASE, callbacks_of=self.registry.names(), skip_notifiers=busy
        )
        taken: list[NotificationRecord] = []
        over: list[int] = []
        with self._lock:
            for notification in claimed:
                if self._busy[notification.notifier] >= PER_NOTIFIER:
                    over.append(notification.notification_id)  # its notifier is busy
                    continue
                self._busy[notification.notifier] += 1
                taken.append(notification)
        self.store.release_notifications(self.owner, over)
        return taken

    def _deliver(self, notification: NotificationRecord) -> None:
        try:
            self._attempt(notification)
        finally:
            with self._lock:
                self._busy[notification.notifier] -= 1
                if self._busy[notification.notifier] <= 0:
                    del self._busy[notification.notifier]
            self._wake.set()

    def _attempt(self, notification: NotificationRecord) -> None:
        try:
            record = self.store.get_workflow(notification.workflow_id)
        except WorkflowNotFoundError:
            record = None  # a tick that never started (a missed deadline), or deleted
        info = run_info(notification, record, self.base_url)
        try:
            if notification.target.startswith(CALLBACK):
                self._call(notification, info)
            else:
                send(notification, info)
        except Exception as error:
            reason = error.message if isinstance(error, DeliveryError) else one_line(error)
            self._failed(notification, reason)
            return
        self.store.notification_delivered(notification.notification_id, self.owner)
        self.delivered += 1
        log.info(
            "Notified %s of %s %s",
            mask_target(notification.target),
            notification.workflow_id,
            notification.event,
        )

    def _call(self, notification: NotificationRecord, info: Any) -> None:
        schedule = self.registry.find(notification.name)
        callback = schedule.alerts.callback(notification.target) if schedule else None
        if callback is None:
            raise DeliveryError(
                f"{notification.target.removeprefix(CALLBACK)} of {notification.name!r} "
                "is not registered in this scheduler"
            )
        callback(info)

    def _failed(self, notification: NotificationRecord, reason: str) -> None:
        self.failed_attempts += 1
        attempts = notification.attempts + 1
        retry_at = None if attempts >= MAX_ATTEMPTS else time.time() + backoff(attempts)
        self.store.notification_failed(notification.notification_id, self.owner, reason, retry_at)
        log.warning(
            "Notifying %s of %s %s failed (attempt %d of %d%s): %s",
            mask_target(notification.target),
            notification.workflow_id,
            notification.event,
            attempts,
            MAX_ATTEMPTS,
            "" if retry_at is not None else ", given up",
            reason,
        )
