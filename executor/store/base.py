"""The store's contract: what the executor, the scheduler and the dashboard may ask of
durable state, what each call returns, and what it raises.

``SqlStore`` is the one implementation (SQLite and PostgreSQL). Everything above the
store reads and writes through these methods and the frozen records of
``executor.store.records``; none of it sees a table, a row or a SQLAlchemy error.

Every method may raise:

- ``DatabaseUnavailableError`` when the database cannot be reached. Writes first retry
  with backoff for up to ``GNOMON_DB_RETRY_SECONDS`` (60); reads do not retry.
- ``DatabaseError`` when the database refuses a statement for any other reason.

Both derive from ``executor.errors.WorkflowError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from executor.status import TaskStatus, WorkflowStatus
from executor.store.leases import LEASE_TTL
from executor.store.records import (
    Admission,
    BackfillRecord,
    Checkpoint,
    EventRecord,
    Expand,
    NewTask,
    NotificationRecord,
    NotifyRoute,
    PoolRecord,
    QueueLimits,
    Rate,
    Rerun,
    RunAlerts,
    SlotWait,
    TaskAttempt,
    TaskFinish,
    TaskLog,
    TaskRecord,
    WorkflowRecord,
)


class Store(ABC):
    """Durable state of workflows, tasks, checkpoints, leases and mailboxes.

    Invariants every implementation keeps:

    - A workflow row is created once: a second ``create_workflow`` of an id is a no-op.
    - Ownership is a lease: ``acquire`` is a compare-and-set that succeeds only when the
      workflow has no live owner, so two processes never run one workflow.
    - A task's checkpoint is written in the transaction that marks it SUCCESSFUL or
      CONTINUED, and a second checkpoint of the same task is ignored: the first result
      and its row stand.
    - Reads report a RUNNING or PENDING workflow whose owner's lease is lost (expired,
      or its process gone) as RESUMABLE.
    - An event is consumed by exactly one wait.
    """

    # ----------------------------------------------------------------- lifecycle

    @abstractmethod
    def dispose(self) -> None:
        """Close every connection; the store is not used afterwards."""

    @abstractmethod
    def ping(self) -> None:
        """One round trip (health checks); raises ``DatabaseUnavailableError`` if it fails."""

    # ---------------------------------------------------------------- workflows

    @abstractmethod
    def create_workflow(
        self,
        workflow_id: str,
        name: str,
        graph: bytes | None,
        graph_blob: str | None,
        output_task_id: str,
        new_tasks: Sequence[NewTask],
        user_metadata: dict[str, Any],
        trigger: str = "manual",
        owner: str | None = None,
        ttl: float = LEASE_TTL,
        max_active: int | None = None,
        queue: QueueLimits | None = None,
        code_version: str | None = None,
        forked_from: str | None = None,
        alerts: RunAlerts | None = None,
        timeout_s: float | None = None,
    ) -> bool:
        """Insert a workflow and its tasks; False (and nothing written) if the id exists.
        ``timeout_s`` is how long the run may take (its owner enforces it).
        ``code_version`` is the version of the code its graph was built from;
        ``forked_from`` the run it was forked from.
        ``alerts`` are a registered run's notification routes, written with it, and its
        deadline: its outcome (``finish``, ``finish_many``, the output task's
        ``task_finished``) then writes the outbox rows of its event in the outcome's own
        transaction, and ``task_retrying`` those of a retry.

        With ``owner`` the workflow is created RUNNING under that owner's lease, which
        spares the owner an ``acquire``; otherwise it is PENDING with no owner.
        With ``max_active``, raises ``NoFreeSlotError`` (and writes nothing) if that many
        workflows of ``name`` already hold a slot (``status.HOLDS_SLOT``). That is decided
        in the insert's own transaction, so scheduler replicas with stale views of each
        other cannot both take the last slot.
        With ``queue`` limits, a workflow that finds every running slot taken is created
        PENDING in the queue instead (still leased to ``owner``, who waits for
        ``admit``), or, if the queue is full too, raises ``WorkflowQueueFullError``.
        """

    @abstractmethod
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow's record; raises ``WorkflowNotFoundError``."""

    @abstractmethod
    def load_graph(self, workflow_id: str) -> tuple[bytes | None, str | None]:
        """The stored graph: (its bytes, or the blob URL holding them); raises
        ``WorkflowNotFoundError``."""

    @abstractmethod
    def list_workflows(
        self,
        statuses: Sequence[WorkflowStatus] | None = None,
        name: str | None = None,
        limit: int | None = None,
        before: tuple[float, str] | None = None,
        id_prefix: str | None = None,
        code_version: str | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows newest first, filtered by status as readers see it (RESUMABLE
        included), name, id prefix and code version. ``before`` is the (created_at,
        workflow_id) of the last record of the previous page."""

    @abstractmethod
    def count_by_status(self) -> dict[str, int]:
        """How many workflows are stored in each status (as stored, not as read)."""

    @abstractmethod
    def acquire(self, workflow_id: str, owner: str, ttl: float = LEASE_TTL) -> bool:
        """Take the lease if nobody alive holds it, and mark the workflow RUNNING; False
        if a live owner holds it or another process took it first. Raises
        ``WorkflowNotFoundError``."""

    @abstractmethod
    def enter(
        self, workflow_id: str, owner: str, queue: QueueLimits, ttl: float = LEASE_TTL
    ) -> Admission:
        """``acquire`` through the workflow queue: RUNNING if a running slot is free
        (the lease is taken and the workflow marked RUNNING), QUEUED if it must wait
        (the lease is taken, the workflow PENDING in the queue, keeping the place it
        had), TAKEN if a live owner holds it. Raises ``WorkflowQueueFullError`` and
        ``WorkflowNotFoundError``."""

    @abstractmethod
    def admit(self, owner: str, queue: QueueLimits, ttl: float = LEASE_TTL) -> list[str]:
        """Move the oldest queued workflows into the running slots that are free, those
        of them ``owner`` holds, and return their ids (marked RUNNING). Workflows of
        other owners keep their place: their owners admit them."""

    @abstractmethod
    def queue_limits(self) -> QueueLimits:
        """The workflow queue's limits as stored (no limits if none were set), as read
        in the last few seconds."""

    @abstractmethod
    def set_queue_limits(self, max_running: int | None, max_pending: int | None) -> QueueLimits:
        """Store the queue's limits the first time (None: no limit); later, check that
        the ones given (None: any) match the stored ones, else raise
        ``InvalidInputError``. Returns the limits in force."""

    @abstractmethod
    def renew(self, owner: str, workflow_ids: Sequence[str], ttl: float = LEASE_TTL) -> None:
        """Extend ``owner``'s leases on these workflows (those it still holds)."""

    @abstractmethod
    def owners(self, workflow_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """(stored status, owner) of each of these workflows that exists, in one read."""

    @abstractmethod
    def finish(
        self,
        workflow_id: str,
        owner: str | None,
        status: WorkflowStatus,
        output_preview: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome and release the lease; False if ``owner`` (when given) no
        longer owns the workflow, or it does not exist."""

    @abstractmethod
    def finish_many(
        self, owner: str, outcomes: Sequence[tuple[str, WorkflowStatus, str | None, str | None]]
    ) -> None:
        """``finish`` for many workflows of one owner, in one transaction: (workflow id,
        status, output preview, error) each. Workflows ``owner`` no longer owns are left
        alone."""

    @abstractmethod
    def set_status(self, workflow_id: str, status: WorkflowStatus) -> None:
        """Overwrite the stored status (a cancel of a workflow another process owns);
        raises ``WorkflowNotFoundError``."""

    @abstractmethod
    def delete_workflow(self, workflow_id: str) -> None:
        """Remove the workflow with its tasks, checkpoints, events and logs; raises
        ``WorkflowNotFoundError``. Blobs are the caller's to delete."""

    # ------------------------------------------------------------------- reruns

    @abstractmethod
    def rerun(self, workflow_id: str, change: Rerun) -> None:
        """Apply ``change`` in one transaction and leave the workflow RESUMABLE with no
        owner, for the caller to resume (or recovery, if the caller dies first): the
        rows of the tasks that run again are kept as earlier attempts
        (``task_attempts``) and their checkpoints dropped; a new graph replaces the
        stored one; tasks kept across new code keep the version they ran with. Raises
        ``WorkflowNotFoundError``, and ``WorkflowStillActiveError`` while a live owner
        runs it."""

    @abstractmethod
    def fork_workflow(
        self,
        origin_id: str,
        workflow_id: str,
        name: str,
        graph: bytes | None,
        graph_blob: str | None,
        output_task_id: str,
        new_tasks: Sequence[NewTask],
        copied: Sequence[TaskRecord],
        checkpoints: dict[str, Checkpoint],
        user_metadata: dict[str, Any],
        owner: str,
        code_version: str | None = None,
    ) -> bool:
        """Create a workflow forked from ``origin_id``, leased to ``owner``, in one
        transaction: its tasks (``new_tasks``), the rows of those ``copied`` finished,
        and ``checkpoints`` (by task id). False (nothing written) if the id exists."""

    @abstractmethod
    def forks(self, workflow_id: str) -> list[str]:
        """The ids of the workflows forked from this one, oldest first."""

    @abstractmethod
    def task_attempts(self, workflow_id: str, task_id: str | None = None) -> list[TaskAttempt]:
        """Earlier attempts of the workflow's tasks (or one task's), oldest first per task."""

    # --------------------------------------------------------------------- tasks

    @abstractmethod
    def tasks_started(self, workflow_id: str, started: Sequence[tuple[str, float]]) -> None:
        """Mark tasks RUNNING at the given times: (task_id, started at) each. Tasks whose
        finish is recorded are left alone. Every pair is applied, in one transaction."""

    @abstractmethod
    def task_finished(
        self,
        workflow_id: str,
        task_id: str,
        checkpoint: Checkpoint | None,
        output_preview: str | None,
        started_at: float,
        attempts_delta: int,
        completes: Sequence[str] = (),
        log: tuple[float, str] | None = None,
        graph_output: bool = True,
        pool: str | None = None,
        hand_to: str | None = None,
    ) -> TaskFinish:
        """Record a task's finish, in one transaction: its checkpoint (None when it is
        not checkpointed), its row, and the rows of ``completes``, the tasks whose
        continuations end in it. ``log`` is the last attempt's (start time, captured
        text).

        If the task was checkpointed already, nothing is written. A value that is the
        workflow's output also records the workflow SUCCESSFUL (only while it is
        RUNNING: a cancel that came first stands); ``outcome`` says if it did. A task
        known not to be its graph's output (``graph_output=False``) skips that look.

        With ``pool``, the task's slot of that pool goes back in the same transaction,
        as ``release_slot`` gives it back (checkpointed already or not); ``waiting``
        says whether live waiters remain in the pool's line. With ``hand_to`` too, when
        nobody waits in that line, the slot passes instead to that task (the next of a
        chain, in the same pool), which holds it from then (``handed``).
        """

    @abstractmethod
    def task_continued(
        self,
        workflow_id: str,
        task_id: str,
        started_at: float,
        attempts_delta: int,
        expand: Expand,
        log: tuple[float, str] | None = None,
    ) -> WorkflowStatus:
        """Record that a task returned a continuation, in one transaction: the task ids
        the continuation needs, reserved; the continuation's graph as its checkpoint
        (kind "continuation"), its row CONTINUED, and the continuation's task rows.

        ``expand`` builds the checkpoint and the rows, given a ``ReserveIds`` that
        reserves ids in the transaction: ``counts`` says how many ids of each base the
        graph needs; it returns, per base, the first index it may use (ids are
        ``<base>`` for index 0, else ``<base>_<index>``). Indexes are never handed out
        twice in a workflow; a base's first reservation starts after the ids of that
        base the workflow already has. ``expand`` may run more than once (the
        transaction is retried); what it raises is raised, and nothing is written.

        If the task was checkpointed already, only the log is written. Returns the
        workflow's stored status as of the commit (a canceled workflow's continuation is
        not to be submitted). Raises ``DatabaseError`` when a task id is taken."""

    @abstractmethod
    def tasks_canceled(self, workflow_id: str) -> None:
        """Mark the workflow's tasks that have not ended (PENDING, RUNNING, WAITING)
        CANCELED."""

    @abstractmethod
    def task_crashed(self, workflow_id: str, task_id: str) -> int:
        """Count one more worker death while the task ran; returns how many there were."""

    @abstractmethod
    def task_failed(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        log: tuple[float, str] | None = None,
    ) -> None:
        """Mark a task FAILED with its error text; ``log`` as in ``task_finished``."""

    @abstractmethod
    def task_backoff(
        self,
        workflow_id: str,
        task_id: str,
        error: str,
        started_at: float,
        attempts_delta: int,
        wake_at: float,
        next_attempt: int,
        max_attempts: int,
        log: tuple[float, str] | None = None,
    ) -> None:
        """Mark a task RETRYING: an attempt failed with ``error`` and attempt
        ``next_attempt`` (of ``max_attempts``) starts at ``wake_at``, which is stored as
        the task's ``wake_at`` (a resume waits only what is left). A task whose finish is
        recorded is left alone; ``log`` as in ``task_finished``."""

    @abstractmethod
    def set_task_status(
        self, workflow_id: str, task_ids: Sequence[str], status: TaskStatus
    ) -> None:
        """Set these tasks' status, except those whose finish is recorded."""

    @abstractmethod
    def finished_tasks(self, workflow_id: str, task_ids: Sequence[str]) -> set[str]:
        """Those of these tasks whose finish is recorded (a checkpoint or a
        continuation). Retried like a write: a Ray call that Ray runs again asks it
        before it starts, and its answer decides whether a task runs twice."""

    @abstractmethod
    def save_logs(self, logs: Sequence[tuple[str, str, float, str]]) -> None:
        """Write running attempts' logs: (workflow_id, task_id, attempt started at, text)
        each; an attempt's text replaces what was stored for it."""

    @abstractmethod
    def task_logs(self, workflow_id: str, task_id: str) -> list[TaskLog]:
        """Each attempt's captured output, oldest attempt first."""

    @abstractmethod
    def load_tasks(self, workflow_id: str) -> list[TaskRecord]:
        """The workflow's tasks in the order they were added; [] for an unknown id."""

    @abstractmethod
    def get_task(self, workflow_id: str, task_id: str) -> TaskRecord:
        """One task; raises ``WorkflowNotFoundError`` or ``TaskNotFoundError``."""

    @abstractmethod
    def load_checkpoint(self, workflow_id: str, task_id: str) -> Checkpoint | None:
        """The task's checkpoint, or None if it has none."""

    @abstractmethod
    def load_checkpoints(self, workflow_id: str, task_ids: Sequence[str]) -> dict[str, Checkpoint]:
        """The checkpoints of those of these tasks that have one."""

    # ------------------------------------------------------------------- waiting

    @abstractmethod
    def send_event(self, workflow_id: str, event_key: str, payload_json: str) -> int:
        """Store an event (JSON text) for the workflow, even if nothing waits for it yet;
        returns its id. Raises ``WorkflowNotFoundError``, or ``InvalidInputError`` if the
        workflow takes no more events (SUCCESSFUL or CANCELED)."""

    @abstractmethod
    def consume_event(
        self,
        workflow_id: str,
        event_key: str,
        task_id: str,
        checkpoint_for: Callable[[Any], tuple[Checkpoint, str]],
        started_at: float,
        completes: Sequence[str] = (),
    ) -> tuple[str, Any] | Checkpoint | None:
        """Take the oldest unconsumed event for this key and checkpoint the waiting task
        with it (``checkpoint_for(payload)`` gives the checkpoint and its preview), in one
        transaction; returns ``(event_key, payload)``. If the task already has its event,
        returns that checkpoint; if no event is waiting, None."""

    @abstractmethod
    def mailboxes_with_mail(self, mailboxes: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (workflow_id, event_key) mailboxes hold an unconsumed event."""

    @abstractmethod
    def list_events(self, workflow_id: str) -> list[EventRecord]:
        """The workflow's events, oldest first, consumed or not."""

    @abstractmethod
    def task_waiting(self, workflow_id: str, task_id: str, wake_at: float | None = None) -> float:
        """Mark a task WAITING. A sleep's ``wake_at`` is recorded once: returns the
        stored wake time (the first one recorded), or 0.0 without one."""

    @abstractmethod
    def suspend(self, workflow_id: str, owner: str, wake_at: float) -> bool:
        """Park the workflow until ``wake_at``: PENDING, no owner. False if ``owner`` no
        longer owns it."""

    @abstractmethod
    def due_wakeups(self, before: float) -> list[tuple[str, float]]:
        """Suspended workflows to wake by ``before``: (workflow_id, wake_at), soonest first."""

    @abstractmethod
    def waiting_tasks(self, workflow_ids: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(workflow_id, task_id) of the WAITING tasks of these workflows."""

    # ------------------------------------------------------------- notifications

    @abstractmethod
    def task_retrying(
        self,
        workflow_id: str,
        task_id: str,
        attempt_started_at: float,
        error: str,
        log_text: str,
    ) -> None:
        """A task's attempt failed and it runs again: save the attempt's log (if any) and
        put a ``retry`` event for the run's retry routes in the outbox, in one
        transaction. Idempotent by (task, attempt start, notifier)."""

    @abstractmethod
    def deadline_missed(
        self,
        workflow_id: str,
        name: str,
        deadline_at: float,
        routes: Sequence[NotifyRoute],
        status: str | None,
    ) -> None:
        """Put a ``deadline_missed`` event in the outbox for each route, whether or not the
        run exists (a tick that never started misses its deadline too). Idempotent by
        (run, deadline, notifier): scheduler replicas may both report it."""

    @abstractmethod
    def claim_notifications(
        self,
        owner: str,
        limit: int,
        lease: float,
        callbacks_of: Sequence[str] = (),
        skip_notifiers: Sequence[str] = (),
    ) -> list[NotificationRecord]:
        """Claim up to ``limit`` pending notifications that are due, oldest due first,
        for ``lease`` seconds (another claimer skips them meanwhile; an expired claim is
        due again). Python callbacks (``callback:`` targets) only of the schedules named
        in ``callbacks_of``; none of the notifiers in ``skip_notifiers``."""

    @abstractmethod
    def notification_delivered(self, notification_id: int, owner: str) -> bool:
        """Mark a claimed notification delivered; False if ``owner`` no longer holds it."""

    @abstractmethod
    def notification_failed(
        self, notification_id: int, owner: str, error: str, retry_at: float | None
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or given up (``failed``)
        when it is None. False if ``owner`` no longer holds the claim."""

    @abstractmethod
    def release_notifications(self, owner: str, notification_ids: Sequence[int]) -> None:
        """Give up ``owner``'s claims on these notifications unattempted: due again now."""

    @abstractmethod
    def list_notifications(self, workflow_id: str) -> list[NotificationRecord]:
        """The run's notifications, oldest first (also those of a run that never
        started: a missed deadline)."""

    @abstractmethod
    def notification_stats(self) -> tuple[dict[str, int], int]:
        """Notifications by state, and the failed delivery attempts of all of them."""

    @abstractmethod
    def open_deadlines(self) -> list[tuple[str, float]]:
        """(workflow_id, deadline_at) of the active runs that have a deadline."""

    # ----------------------------------------------------------------- backfills

    @abstractmethod
    def create_backfill(
        self,
        name: str,
        workflow_ids: Sequence[str],
        start_at: float,
        end_at: float,
        params: dict[str, Any],
        max_active: int | None,
        rerun_failed: bool,
    ) -> BackfillRecord:
        """Store a backfill of ``name``'s runs ``workflow_ids`` (in the order they are to
        start), RUNNING. Ticks whose run exists are skipped, or, with ``rerun_failed``,
        queued to be resumed if it FAILED; the rest are queued to be created."""

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> BackfillRecord | None:
        """The backfill with its progress; None for an unknown id."""

    @abstractmethod
    def list_backfills(self, name: str | None = None, limit: int = 100) -> list[BackfillRecord]:
        """Backfills newest first (of one schedule, given ``name``), with their progress."""

    @abstractmethod
    def set_backfill_state(
        self, backfill_id: str, state: str, allowed_from: Sequence[str]
    ) -> BackfillRecord | None:
        """Move the backfill to ``state`` if it is in one of ``allowed_from``; returns it
        as it is now (unchanged if it was not), or None for an unknown id."""

    @abstractmethod
    def claim_backfills(self, owner: str, names: Sequence[str], ttl: float) -> list[BackfillRecord]:
        """Take or renew the lease on the backfills of these schedules that need driving
        (running, canceling) and that no live owner holds; returns those ``owner`` holds."""

    @abstractmethod
    def backfill_ticks(
        self, backfill_id: str, states: Sequence[str], limit: int | None = None
    ) -> list[tuple[int, str, str]]:
        """(seq, workflow_id, state) of its ticks in these states, in start order."""

    @abstractmethod
    def backfill_active(self, backfill_id: str) -> list[str]:
        """The ids of its runs that are RUNNING or PENDING."""

    @abstractmethod
    def backfill_tick_done(self, backfill_id: str, seq: int, state: str) -> None:
        """Record what became of a tick (``started`` or ``skipped``)."""

    # -------------------------------------------------------------------- pools

    @abstractmethod
    def set_pool(self, name: str, slots: int, rate: Rate | None) -> PoolRecord:
        """Create a concurrency pool, or replace its limits; returns it. A change holds
        for the next slot taken or granted (tasks running keep theirs)."""

    @abstractmethod
    def get_pool(self, name: str) -> PoolRecord:
        """A pool with its slots used and tasks queued now; raises ``PoolNotFoundError``."""

    @abstractmethod
    def list_pools(self) -> list[PoolRecord]:
        """Every pool, by name, as ``get_pool`` gives it."""

    @abstractmethod
    def missing_pools(self, names: Sequence[str]) -> set[str]:
        """Those of these pool names that no pool has."""

    @abstractmethod
    def try_slot(
        self, pool: str, workflow_id: str, task_id: str, priority: int, owner: str, ttl: float
    ) -> bool:
        """Take a slot of ``pool`` for the task, leased to ``owner`` for ``ttl`` seconds,
        if one is free, no live waiter of at least ``priority`` is in line, and the pool's
        rate allows a start now; True if the task holds a slot (also when it held one
        already: granted by ``grant_slots``, or by its own earlier try, which ``owner``
        now takes over). False takes nothing. Raises ``PoolNotFoundError``."""

    @abstractmethod
    def take_slots(
        self, pool: str, workflow_id: str, tasks: Sequence[tuple[str, int]], owner: str, ttl: float
    ) -> list[str]:
        """Take free slots of ``pool`` for some of the workflow's ``tasks`` ((task_id,
        priority), none holding a row in the pool yet), leased to ``owner``, in one
        transaction: as many as are free, highest priority first, and none when anyone
        waits in line or the pool has a rate (their tasks take the long way, each as it
        starts). Returns the task ids that hold a slot now. Raises
        ``PoolNotFoundError``."""

    @abstractmethod
    def queue_for_slot(
        self, pool: str, workflow_id: str, task_id: str, priority: int, owner: str, ttl: float
    ) -> bool:
        """Put the task in ``pool``'s line (highest priority first, then first come; a
        task queued before keeps its place) for ``owner`` to grant, and mark it QUEUED;
        ``owner`` renews the lease while it waits. True, and nothing written, if the task
        holds a slot already. Raises ``PoolNotFoundError``."""

    @abstractmethod
    def grant_slots(
        self, pool: str, owner: str, ttl: float
    ) -> tuple[list[tuple[str, str]], float | None]:
        """Grant the pool's free slots (within its rate) to the head of its line, those
        waiters of it that ``owner`` queued (the others keep their place: their owners
        grant them). Returns their (workflow_id, task_id), now holding a slot leased to
        ``owner`` and PENDING again with their wait added to ``queued_s``; and, when the
        rate holds back a free slot, the time the next start may happen (else None)."""

    @abstractmethod
    def release_slot(self, pool: str, workflow_id: str, task_id: str) -> bool:
        """Give the task's slot (or place in line) back; True if live waiters remain in
        the pool's line (someone should ``grant_slots``)."""

    @abstractmethod
    def release_slots(
        self,
        workflow_id: str,
        owner: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> set[str]:
        """Give back every slot and place in line of the workflow's tasks (only those
        leased to ``owner``, and of ``task_ids``, when given); the pools they were in."""

    @abstractmethod
    def renew_slots(self, owner: str, ttl: float) -> None:
        """Extend the leases of the slots and places in line ``owner`` holds."""

    @abstractmethod
    def slot_waits(self, workflow_id: str) -> dict[str, SlotWait]:
        """The workflow's tasks waiting in a pool's line: task_id -> pool and how many
        live waiters stand ahead."""

    @abstractmethod
    def count(self, counts: dict[str, int]) -> None:
        """Add to counters that only grow (``task_timeouts``, ``task_retries``)."""

    @abstractmethod
    def counters(self) -> dict[str, int]:
        """Every counter's value."""
