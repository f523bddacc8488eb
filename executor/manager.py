"""The workflow manager: a detached, zero-CPU async actor that owns running workflows.

A workflow's life is decoupled from the script that started it: the manager submits
the tasks (so it owns their ObjectRefs), holds each workflow's lease and heartbeats it,
records the outcome, and answers ``wait`` calls. There is one manager per cluster and
database; a dead manager's workflows read RESUMABLE and any process can resume them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import ray
from ray.exceptions import ObjectLostError, RayError, RayTaskError, TaskCancelledError

from executor.actors import NAMESPACE, manager_name, same_session, session_cache
from executor.checkpoint import loads, make_checkpoint, preview, read_checkpoint
from executor.config import StoreConfig, handles
from executor.dag import CATCH, Graph
from executor.errors import (
    CheckpointError,
    WorkflowCancellationError,
    WorkflowError,
    WorkflowExecutionError,
    WorkflowNotResumableError,
    WorkflowTimeoutError,
    one_line,
)
from executor.events import SUSPEND_AFTER, HTTPListener, WorkflowSuspended, mailbox_key
from executor.graph_runner import GraphRunner
from executor.outputs import NOT_YET, stored_output
from executor.pool_slots import PoolSlots
from executor.pools import POOL_LEASE_TTL
from executor.stages import Continued, FinalOutput, TaskContext
from executor.status import WorkflowStatus
from executor.store import LEASE_TTL, Admission, Checkpoint, QueueLimits, owner_id
from executor.worker import RAY_TASK_EVENTS, RayLauncher

log = logging.getLogger(__name__)
#: How many times a run goes on from what is stored after losing an object it follows
#: (``ObjectLostError``: the worker that owned it died) before it fails with that error.
LOST_RESUMES = 3
#: How often the manager looks for events it was not told about, for all mailboxes at once.
MAILBOX_POLL = 1.0
#: A waiter re-reads its own mailbox this often even without a wake-up: a safety net.
MAILBOX_RECHECK = 30.0


def root_cause(error: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (nested once per continuation hop)."""
    while isinstance(error, RayTaskError) and error.cause is not None:
        if error.cause is error:
            break
        error = error.cause
    return error


def failure_text(cause: BaseException) -> str:
    if isinstance(cause, RayTaskError):
        return str(cause)
    text = getattr(cause, "traceback_str", None)
    return f"{type(cause).__name__}: {cause}" if text is None else str(text)


#: A call that is safe to run again: when the manager's process dies, Ray runs it again
#: on the restarted manager instead of failing the caller.
_retried_after_restart = ray.method(max_task_retries=-1)


class WorkflowManager:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.owner = owner_id(uuid.uuid4().hex[:12])
        self.executions: dict[str, asyncio.Task[Any]] = {}
        self.runners: dict[str, GraphRunner] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        #: (workflow_id, event_key) -> its waiters, woken when an event for it is sent.
        self._mail: dict[tuple[str, str], set[asyncio.Event]] = {}
        self._mail_poller: asyncio.Task[None] | None = None
        #: Workflows canceled before their ``run`` call arrived (oldest first, bounded).
        self._canceled: dict[str, None] = {}
        self._outcomes = _Outcomes(config, self.owner)
        self._queue = _Admissions(config, self.owner)
        self._slots = PoolSlots(config, self.owner)
        #: workflow_id -> its tasks' waits here for a pool slot or a retry's backoff,
        #: stopped when the workflow is canceled or ends.
        self._parked: dict[str, set[asyncio.Task[Any]]] = {}

    @_retried_after_restart
    async def owner_id(self) -> str:
        return self.owner

    @_retried_after_restart
    async def run(
        self,
        workflow_id: str,
        graph: bytes | None,
        fresh: bool,
        leased_to: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Execute (or join the execution of) a workflow and return its output.

        ``leased_to`` is the owner the submitter created the workflow for; if that is this
        manager, the lease is already held and needs no second write. Run again on a
        restarted manager (a new owner), the call takes the workflow over and resumes it.
        ``timeout_s`` is the run's own (read from its row when ``graph`` is None).
        """
        execution = await self.start(workflow_id, graph, fresh, leased_to, timeout_s)
        return await asyncio.shield(execution)

    async def start(
        self,
        workflow_id: str,
        graph: bytes | None,
        fresh: bool,
        leased_to: str | None = None,
        timeout_s: float | None = None,
    ) -> asyncio.Task:
        self._ensure_heartbeat()
        execution = self.executions.get(workflow_id)
        if execution is not None:
            return execution
        if leased_to == self.owner:
            admission = await self._admission_of(workflow_id)
        else:
            admission = await self._enter(workflow_id)
        if workflow_id in self._canceled:
            del self._canceled[workflow_id]
            if leased_to == self.owner:
                # The cancel overtook this submission: Ray orders actor calls per caller
                # only. (A resume after a cancel is meant: it runs.)
                raise WorkflowCancellationError(workflow_id)
        # Only a workflow created for this manager can be fresh: any other may have
        # finished tasks (a call run again after a restart, most of all).
        fresh = fresh and leased_to == self.owner
        if admission == Admission.QUEUED:
            execution = asyncio.create_task(
                self._execute_when_admitted(workflow_id, graph, fresh, timeout_s)
            )
        else:
            execution = asyncio.create_task(self._execute(workflow_id, graph, fresh, timeout_s))
        self.executions[workflow_id] = execution
        execution.add_done_callback(lambda _: self._forget(workflow_id))
        return execution

    @_retried_after_restart
    async def enter(self, workflow_id: str) -> str:
        """Take the workflow's lease for this manager, to run it now or, when every slot
        of the workflow queue is taken, to wait in it; returns the owner id the lease is
        held under (pass it to ``run``). Raises ``WorkflowNotResumableError`` if a live
        owner holds it, and ``WorkflowQueueFullError``."""
        await self._enter(workflow_id)
        return self.owner

    async def _enter(self, workflow_id: str) -> Admission:
        store = handles(self.config).store
        limits = await self._queue.limits()
        if limits.limited:
            admission = await asyncio.to_thread(store.enter, workflow_id, self.owner, limits)
        else:
            acquired = await asyncio.to_thread(store.acquire, workflow_id, self.owner)
            admission = Admission.RUNNING if acquired else Admission.TAKEN
        if admission == Admission.TAKEN:
            raise WorkflowNotResumableError(workflow_id, "another live process is running it")
        return admission

    async def _admission_of(self, workflow_id: str) -> Admission:
        """Whether a workflow this manager holds runs now or waits in the queue."""
        if not (await self._queue.limits()).limited:
            return Admission.RUNNING
        store = handles(self.config).store
        record = await asyncio.to_thread(store.get_workflow, workflow_id)
        return Admission.QUEUED if record.queued else Admission.RUNNING

    def _forget(self, workflow_id: str) -> None:
        self.executions.pop(workflow_id, None)
        self._drop_runner(workflow_id)
        self._queue.slot_freed()
        self._unpark(workflow_id)

    async def _execute_when_admitted(
        self, workflow_id: str, graph_data: bytes | None, fresh: bool, timeout_s: float | None
    ) -> Any:
        """Wait in the workflow queue (PENDING, no CPU) for a running slot, then run."""
        try:
            await self._queue.admission(workflow_id)
        except asyncio.CancelledError:
            store = handles(self.config).store
            await asyncio.to_thread(store.finish, workflow_id, self.owner, WorkflowStatus.CANCELED)
            raise WorkflowCancellationError(workflow_id) from None
        return await self._execute(workflow_id, graph_data, fresh, timeout_s)

    def _drop_runner(self, workflow_id: str) -> None:
        runner = self.runners.pop(workflow_id, None)
        if runner is not None:
            self._slots.give_back(workflow_id, runner.holding)

    async def running(self) -> list[str]:
        return list(self.executions)

    async def cancel(self, workflow_id: str) -> bool:
        """Stop a workflow this manager runs; False if it runs nowhere here."""
        execution = self.executions.get(workflow_id)
        if execution is None:
            self._canceled[workflow_id] = None
            while len(self._canceled) > _REMEMBERED_CANCELS:
                self._canceled.pop(next(iter(self._canceled)))
            return False
        runner = self.runners.get(workflow_id)
        if runner is not None:
            _cancel(runner.cancelable())
        self._unpark(workflow_id)
        execution.cancel()
        with contextlib.suppress(asyncio.CancelledError, WorkflowError):
            await execution
        if runner is not None:
            # Once Ray has settled the first pass: the tasks it left out (their upstream is
            # now failed or done), and any cancel Ray dropped while leasing a worker.
            asyncio.get_running_loop().call_later(
                _SECOND_CANCEL_AFTER, lambda: _cancel(runner.cancelable())
            )
        # A task cancelled before its first step never ran its handler: record it here
        # (guarded by the owner, so a second write is harmless).
        store = handles(self.config).store
        await asyncio.to_thread(store.finish, workflow_id, self.owner, WorkflowStatus.CANCELED)
        await asyncio.to_thread(store.tasks_canceled, workflow_id)
        return True

    async def _execute(
        self,
        workflow_id: str,
        graph_data: bytes | None,
        fresh: bool,
        timeout_s: float | None = None,
    ) -> Any:
        store, blobs = handles(self.config)
        started = time.time()
        try:
            if graph_data is None:
                data, blob = await asyncio.to_thread(store.load_graph, workflow_id)
                graph_data = data if blob is None else blobs.get(blob)
            if graph_data is None or not fresh:  # the run's own timeout, as stored
                timeout_s = (await asyncio.to_thread(store.get_workflow, workflow_id)).timeout_s
            if graph_data is None:
                raise CheckpointError(f"Workflow {workflow_id!r} has no stored graph to run")
            graph: Graph = loads(graph_data)
            for lost in range(LOST_RESUMES + 1):
                try:
                    value = await self._run_graph(workflow_id, graph, fresh, started, timeout_s)
                    break
                except RayError as error:
                    cause = root_cause(error)
                    if not isinstance(cause, ObjectLostError) or lost == LOST_RESUMES:
                        raise
                    # An object the run follows is gone with its owner: a worker that
                    # submitted tasks of a continuation died after. No task failed; the
                    # run goes on from what is stored, as a resume would.
                    log.warning("Workflow %s resumes: %s", workflow_id, one_line(cause))
                    self._drop_runner(workflow_id)
                    fresh = False
        except WorkflowTimeoutError:
            raise
        except asyncio.CancelledError:
            await asyncio.to_thread(store.finish, workflow_id, self.owner, WorkflowStatus.CANCELED)
            raise WorkflowCancellationError(workflow_id) from None
        except (RayError, WorkflowError) as error:
            cause = root_cause(error)
            if isinstance(cause, WorkflowSuspended):
                return await self._suspend(workflow_id, cause.wake_at)
            await self._outcomes.record(
                workflow_id, WorkflowStatus.FAILED, None, failure_text(cause)
            )
            raise WorkflowExecutionError(workflow_id, one_line(cause)) from cause
        except Exception as error:  # e.g. a stored graph that no longer unpickles here
            await asyncio.to_thread(
                store.finish,
                workflow_id,
                self.owner,
                WorkflowStatus.FAILED,
                None,
                f"Workflow could not be started: {type(error).__name__}: {error}",
            )
            raise WorkflowExecutionError(workflow_id, one_line(error)) from error
        if isinstance(value, FinalOutput):  # its task recorded the outcome with its checkpoint
            return value.value
        await self._outcomes.record(workflow_id, WorkflowStatus.SUCCESSFUL, preview(value))
        return value

    async def _run_graph(
        self,
        workflow_id: str,
        graph: Graph,
        fresh: bool,
        started: float,
        timeout_s: float | None,
    ) -> Any:
        """Submit the run's graph (a fresh run, or what a resume still needs) and follow
        its output."""
        store = handles(self.config).store
        state = None
        if not fresh:
            records = await asyncio.to_thread(store.load_tasks, workflow_id)
            state = {record.task_id: record for record in records}
        launcher = RayLauncher(self.config, slot_owner=self.owner)
        runner = GraphRunner(self.config, workflow_id, launcher, state)
        self.runners[workflow_id] = runner
        if state is None and not graph.pools:
            # A fresh run reads nothing: submitting is quick, non-blocking Ray calls.
            output = runner.submit(graph)
        elif state is None:  # it takes pool slots in the database
            output = await asyncio.to_thread(runner.submit, graph)
        else:  # a resume reads checkpoints from the database
            detached = await asyncio.to_thread(runner.submit_detached, graph)
            for ref in detached:
                await self._follow_within(workflow_id, ref, started, timeout_s)
            output = await asyncio.to_thread(runner.submit, graph)
        return await self._follow_within(workflow_id, output, started, timeout_s)

    async def _follow_within(
        self, workflow_id: str, output: Any, started: float, timeout_s: float | None
    ) -> Any:
        """The output behind ``output``; past ``timeout_s`` from ``started``, the run is
        stopped and FAILED (``WorkflowTimeoutError``)."""
        if timeout_s is None:
            return await _follow(output)
        following = asyncio.ensure_future(_follow(output))
        try:
            done, _ = await asyncio.wait({following}, timeout=started + timeout_s - time.time())
        except asyncio.CancelledError:
            following.cancel()
            raise
        if done:
            return following.result()
        following.cancel()
        await self._stop(workflow_id)
        error = WorkflowTimeoutError(workflow_id, timeout_s)
        await self._outcomes.record(workflow_id, WorkflowStatus.FAILED, None, error.message)
        raise error

    async def _stop(self, workflow_id: str) -> None:
        """Stop the workflow's tasks and waits here, and mark its unfinished tasks
        CANCELED."""
        runner = self.runners.get(workflow_id)
        if runner is not None:
            _cancel(runner.cancelable())
            asyncio.get_running_loop().call_later(
                _SECOND_CANCEL_AFTER, lambda: _cancel(runner.cancelable())
            )
        self._unpark(workflow_id)
        store = handles(self.config).store
        await asyncio.to_thread(store.tasks_canceled, workflow_id)

    async def _suspend(self, workflow_id: str, wake_at: float) -> Any:
        """Park the workflow in the database; if this manager is still alive at
        ``wake_at`` it resumes the workflow itself (the scheduler would otherwise)."""
        store = handles(self.config).store
        self._drop_runner(workflow_id)
        await asyncio.to_thread(store.suspend, workflow_id, self.owner, wake_at)
        await asyncio.sleep(max(0.0, wake_at - time.time()))
        if await asyncio.to_thread(store.acquire, workflow_id, self.owner):
            return await self._execute(workflow_id, None, False)
        return await self.output(workflow_id)

    # ------------------------------------------------------- pool slots, backoffs

    async def slot(self, ctx: TaskContext) -> None:
        """Wait, holding no CPU, until the task is granted a slot of its pool; the
        worker then runs it (``worker.run_task``)."""
        await self._park(ctx.workflow_id, self._slots.wait(ctx))

    async def slot_freed(self, pool: str) -> None:
        """A worker gave a slot of ``pool`` back while tasks wait for one: grant it now."""
        self._slots.freed(pool)

    async def backoff(self, ctx: TaskContext, wake_at: float) -> None:
        """Wait, holding no CPU, until a retrying task's next attempt may start (its
        ``wake_at`` is recorded already). A long one suspends the workflow, as a long
        ``sleep`` does."""
        remaining = wake_at - time.time()
        if remaining > SUSPEND_AFTER:
            raise WorkflowSuspended(ctx.workflow_id, wake_at)
        await self._park(ctx.workflow_id, asyncio.sleep(max(0.0, remaining)))

    async def _park(self, workflow_id: str, waiting: Any) -> Any:
        wait = asyncio.ensure_future(waiting)
        self._parked.setdefault(workflow_id, set()).add(wait)
        try:
            return await wait
        except asyncio.CancelledError:
            # The gated call then fails with this instead of running.
            raise WorkflowCancellationError(workflow_id) from None
        finally:
            parked = self._parked.get(workflow_id)
            if parked is not None:
                parked.discard(wait)
                if not parked:
                    del self._parked[workflow_id]

    def _unpark(self, workflow_id: str) -> None:
        for wait in self._parked.pop(workflow_id, set()):
            wait.cancel()

    # ------------------------------------------------------------------ waits

    async def wait(self, ctx: TaskContext, kind: str, *args: Any) -> Any:
        """Run a task that only waits as a coroutine: a ``sleep``, a ``wait_for_event``
        (and its ``event_committed``), or a ``dag.catching`` task; return its output."""
        store = handles(self.config).store
        started = time.time()
        if kind == CATCH:
            (ref,) = args[0]
            await asyncio.to_thread(store.task_waiting, ctx.workflow_id, ctx.task_id)
            return await self._checkpoint_wait(ctx, await _caught(ref), started)
        if kind == "sleep":
            wake_at = await asyncio.to_thread(
                store.task_waiting, ctx.workflow_id, ctx.task_id, started + float(args[0])
            )
            remaining = wake_at - time.time()
            if remaining > SUSPEND_AFTER:
                raise WorkflowSuspended(ctx.workflow_id, wake_at)
            await asyncio.sleep(max(0.0, remaining))
            return await self._checkpoint_wait(ctx, None, started)
        if kind == "event_committed":
            listener_class, event = args
            await _on_own_loop(listener_class().event_checkpointed, event)
            return await self._checkpoint_wait(ctx, event, started)
        listener_class, listener_args, listener_kwargs = args
        await asyncio.to_thread(store.task_waiting, ctx.workflow_id, ctx.task_id)
        if issubclass(listener_class, HTTPListener):
            return await self._wait_mailbox(
                ctx, mailbox_key(listener_args, listener_kwargs), started
            )
        poll = listener_class().poll_for_event
        event = await _on_own_loop(poll, *listener_args, **listener_kwargs)
        return await self._checkpoint_wait(ctx, event, started)

    async def _checkpoint_wait(self, ctx: TaskContext, value: Any, started: float) -> Any:
        store, blobs = handles(self.config)
        checkpoint = make_checkpoint(value, "value", blobs, ctx.workflow_id, ctx.task_id)
        await asyncio.to_thread(
            store.task_finished,
            ctx.workflow_id,
            ctx.task_id,
            checkpoint,
            preview(value),
            started,
            1,
            ctx.completes,
        )
        return value

    async def _wait_mailbox(self, ctx: TaskContext, event_key: str, started: float) -> Any:
        store, blobs = handles(self.config)

        def checkpoint_for(payload: Any) -> tuple[Any, str]:
            event = (event_key, payload)
            return (
                make_checkpoint(event, "value", blobs, ctx.workflow_id, ctx.task_id),
                preview(event),
            )

        mailbox = (ctx.workflow_id, event_key)
        # Register before looking, so a send between the look and the wait still wakes us.
        arrived = asyncio.Event()
        self._mail.setdefault(mailbox, set()).add(arrived)
        try:
            while True:
                arrived.clear()
                found = await asyncio.to_thread(
                    store.consume_event,
                    ctx.workflow_id,
                    event_key,
                    ctx.task_id,
                    checkpoint_for,
                    started,
                    ctx.completes,
                )
                if isinstance(found, Checkpoint):
                    return read_checkpoint(found, blobs)
                if found is not None:
                    return found
                self._ensure_mail_poller()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), timeout=MAILBOX_RECHECK)
        finally:
            waiters = self._mail.get(mailbox, set())
            waiters.discard(arrived)
            if not waiters:
                self._mail.pop(mailbox, None)

    def _ensure_mail_poller(self) -> None:
        if self._mail_poller is None or self._mail_poller.done():
            self._mail_poller = asyncio.create_task(self._poll_mail())

    async def _poll_mail(self) -> None:
        """Events sent by a process that cannot reach this actor (``notify``) are found
        here: one query a second for all waiting mailboxes, however many there are."""
        store = handles(self.config).store
        while True:
            await asyncio.sleep(MAILBOX_POLL)
            waiting = list(self._mail)
            if not waiting:
                continue
            try:
                for mailbox in await asyncio.to_thread(store.mailboxes_with_mail, waiting):
                    for arrived in self._mail.get(mailbox, ()):
                        arrived.set()
            except Exception:  # the database may be restarting; poll again next second
                log.exception("mailbox poll failed")

    @_retried_after_restart
    async def notify(self, workflow_id: str, event_key: str) -> None:
        """An event was stored for this mailbox: wake its waiter now."""
        for arrived in self._mail.get((workflow_id, event_key), ()):
            arrived.set()

    @_retried_after_restart
    async def output(self, workflow_id: str, task_id: str | None = None) -> Any:
        """The output of a workflow (waiting for it if this manager runs it) or of a task."""
        execution = self.executions.get(workflow_id)
        if task_id is None and execution is not None:
            return await asyncio.shield(execution)
        store, blobs = handles(self.config)
        while True:
            value = await asyncio.to_thread(stored_output, store, blobs, workflow_id, task_id)
            if value is not NOT_YET:
                return value
            await asyncio.sleep(0.05)

    # ----------------------------------------------------------------- leases

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(max(min(LEASE_TTL, POOL_LEASE_TTL) / 3, 0.2))
            try:
                await self.check_leases()
            except Exception:  # the database may be restarting; the next beat retries
                log.exception("lease heartbeat failed")

    async def check_leases(self) -> None:
        """Renew the leases of the workflows running here, and stop those that were
        canceled or taken over meanwhile."""
        owned = list(self.executions)
        store = handles(self.config).store
        if owned or self._slots.giving_back:
            # Places in pools' lines, slots granted to tasks that have not started yet,
            # and slots taken at submission (``RayLauncher.slot_owner``).
            await asyncio.to_thread(store.renew_slots, self.owner, POOL_LEASE_TTL)
        if not owned:
            return
        await asyncio.to_thread(store.renew, self.owner, owned)
        current = await asyncio.to_thread(store.owners, owned)
        for workflow_id, (status, owner) in current.items():
            if _lost(WorkflowStatus(status), owner, self.owner) and workflow_id in self.executions:
                await self.cancel(workflow_id)


def _lost(status: WorkflowStatus, owner: str | None, me: str) -> bool:
    """Whether a workflow this manager executes is no longer its to run.

    A finished row is left alone: usually it is this manager's own outcome, written (and
    the lease released) a moment before the execution returns, and stopping it then
    would report a workflow that succeeded as canceled.
    """
    if status == WorkflowStatus.CANCELED:
        return True
    if status in (WorkflowStatus.SUCCESSFUL, WorkflowStatus.FAILED):
        return False
    return owner != me


#: Seconds between a cancel's two passes over a workflow's tasks.
_SECOND_CANCEL_AFTER = 0.2


def _cancel(refs: list[tuple[ray.ObjectRef, bool]]) -> None:
    """Stop these tasks. A worker's is killed (``force``), as Ray Workflows did: a task
    blocked in a call that ignores interrupts would run on otherwise. A wait in the
    manager is cancelled as a coroutine."""
    for ref, in_worker in refs:
        # Already finished, or not cancelable: nothing to stop.
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=in_worker, recursive=True)


#: How many early cancels a manager remembers (see ``WorkflowManager.start``).
_REMEMBERED_CANCELS = 10_000


#: Seconds between looks at the queue while this manager has workflows waiting in it:
#: slots freed by other processes on the database are seen this late at most.
QUEUE_POLL = 1.0


class _Admissions:
    """This manager's workflows waiting in the workflow queue, and their admission.

    The queue lives in the database, so its limits hold across every process on it:
    whenever a slot may have freed (a workflow here ended, or every ``QUEUE_POLL``
    seconds), the manager admits the oldest queued workflows it holds, in line order.
    """

    def __init__(self, config: StoreConfig, owner: str) -> None:
        self.config = config
        self.owner = owner
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def limits(self) -> QueueLimits:
        # On the loop: the store reads them at most every few seconds.
        return handles(self.config).store.queue_limits()

    async def admission(self, workflow_id: str) -> None:
        """Return once ``workflow_id`` (queued, leased to this manager) is admitted."""
        admitted = asyncio.get_running_loop().create_future()
        self._waiting[workflow_id] = admitted
        self.slot_freed()
        try:
            await admitted
        finally:
            self._waiting.pop(workflow_id, None)

    def slot_freed(self) -> None:
        self._wake.set()
        if self._waiting and (self._pump is None or self._pump.done()):
            self._pump = asyncio.create_task(self._admit())

    async def _admit(self) -> None:
        store = handles(self.config).store
        while self._waiting:
            self._wake.clear()
            try:
                limits = await self.limits()
                admitted = await asyncio.to_thread(store.admit, self.owner, limits)
            except Exception:  # the database may be restarting; look again next poll
                log.exception("workflow queue admission failed")
                admitted = []
            for workflow_id in admitted:
                waiter = self._waiting.get(workflow_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=QUEUE_POLL)


class _Outcomes:
    """Workflow outcomes written in batches: group commit.

    While one batch is being written, the outcomes that arrive wait and go in the next
    one, so under load a transaction records many workflows; alone, one waits for none.
    ``record`` returns once its outcome is durable.
    """

    def __init__(self, config: StoreConfig, owner: str) -> None:
        self.config = config
        self.owner = owner
        self._waiting: list[tuple[tuple[str, WorkflowStatus, str | None, str | None], Any]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(
        self, workflow_id: str, status: WorkflowStatus, output: str | None, error: str | None = None
    ) -> None:
        written = asyncio.get_running_loop().create_future()
        self._waiting.append(((workflow_id, status, output, error), written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await written

    async def _write(self) -> None:
        store = handles(self.config).store
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(store.finish_many, self.owner, [o for o, _ in batch])
            except Exception as error:  # each waiter's workflow sees it
                for _, written in batch:
                    if not written.done():
                        written.set_exception(error)
            else:
                for _, written in batch:
                    if not written.done():
                        written.set_result(None)


async def _follow(ref: Any) -> Any:
    value = await ref
    while isinstance(value, Continued):
        value = await value.ref
    return value


async def _on_own_loop(coroutine_function: Any, *args: Any, **kwargs: Any) -> Any:
    """Await a listener's coroutine on an event loop of its own thread: one that blocks
    (as Ray Workflows' listeners could, each in a task of its own) holds up only itself."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(outcome)
        else:
            done.set_exception(error)

    def target() -> None:
        try:
            outcome = asyncio.run(coroutine_function(*args, **kwargs))
        except BaseException as error:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, outcome, None)

    threading.Thread(target=target, name="gnomon-listener", daemon=True).start()
    return await done


async def _caught(ref: Any) -> tuple[Any, BaseException | None]:
    """``(value, None)`` for the output behind ``ref``, or ``(None, error)`` if anything
    it waited on raised; a cancel or a suspension goes on, uncaught."""
    try:
        return await _follow(ref), None
    except (RayError, WorkflowError) as error:
        cause = root_cause(error)
        if isinstance(cause, (WorkflowSuspended, WorkflowCancellationError, TaskCancelledError)):
            raise
        return None, cause


# Restarted if its process dies (Ray's reference counting can abort it under rapid
# submit-then-cancel). The new process has a new owner id, so the old one's workflows
# read RESUMABLE and are taken over like any dead owner's.
_RemoteManager = ray.remote(num_cpus=0, max_restarts=-1)(WorkflowManager)
_handles: dict[StoreConfig, Any] = session_cache()


def manager_for(config: StoreConfig) -> Any:
    """The cluster's manager for this database, created on first use."""
    same_session()
    handle = _handles.get(config)
    if handle is None:
        handle = _RemoteManager.options(
            name=manager_name(config),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_concurrency=10000,
            enable_task_events=RAY_TASK_EVENTS,
            # On the head node: it lives as long as the cluster, while workers come and go.
            resources={"node:__internal_head__": 0.001},
        ).remote(config)
        _handles[config] = handle
    return handle
