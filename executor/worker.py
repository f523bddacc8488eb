"""What runs inside Ray workers: chains of workflow tasks, each checkpointed.

``run_task`` is the one Ray task Gnomon submits for user code. It runs a chain of
workflow tasks (see ``executor.stages``), each fed the one before's output: the user's
function with its retries of application errors, then the checkpoint and the task's row
in one transaction. A task that returns a continuation has the continuation's graph
stored and submitted from here, and returns ``Continued(ref)``, where ``ref`` is the
continuation's output (or the output's value, if it ran here).

A task that receives a ``Continued`` follows it; if the value is not ready yet, the rest
of its chain is submitted again with the ref as an argument instead of blocking a
worker, so continuations hold no CPU while they wait. A continuation's chains may run
in place, in the call that expanded it (``InPlaceLauncher``): the tasks that take their
outputs then get final values instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray import cloudpickle

from executor.actors import find_manager
from executor.checkpoint import make_checkpoint, preview
from executor.config import StoreConfig, handles
from executor.dag import Graph, build_graph, catching
from executor.errors import (
    CheckpointError,
    DatabaseError,
    TaskCrashedError,
    TaskTimeoutError,
    WorkflowCancellationError,
    WorkflowError,
)
from executor.graph_runner import NOT_RUN, GraphRunner, Inline, new_task_rows
from executor.logs import AttemptLog, capture
from executor.notices import NOTICES
from executor.options import TaskOptions
from executor.pools import HELD, POOL_LEASE_TTL
from executor.stages import (
    NOT_RECORDED,
    Call,
    Continuation,
    Continued,
    Dep,
    FinalOutput,
    Resolved,
    Stage,
    TaskContext,
    flatten,
    pack,
    running,
    unflatten,
    unpack,
)
from executor.status import WorkflowStatus
from executor.store import Checkpoint, NewTask, ReserveIds, TaskFinish
from executor.timeouts import time_limit

logger = logging.getLogger(__name__)
#: How a task's error reads when its worker was killed for running past its timeout.
TIMEOUT_KILLED = "TaskTimeoutError:"
#: Counters (``Store.count``) of task timeouts and retries, for Prometheus.
TIMEOUTS, RETRIES = "task_timeouts", "task_retries"
#: Ray keeps an event stream of every task for its own dashboard, state API and
#: timeline. Gnomon records each task's state in its database, so the stream is off for
#: Gnomon's tasks and manager calls unless ``GNOMON_RAY_TASK_EVENTS=1`` (on every node).
RAY_TASK_EVENTS = os.environ.get("GNOMON_RAY_TASK_EVENTS", "0") not in ("", "0")


def run_task(packed: bytes, *flat: Any) -> Any:
    """The Ray task: a chain of workflow tasks, each fed the one before's output.

    ``packed`` is the chain's ``Stage``s (``stages.pack``); ``flat`` holds each stage's
    function and arguments, so Ray resolves the ObjectRefs among them.
    """
    stages = unpack(packed)
    return _run_chain(stages, unflatten(stages, flat), _retried())


def _run_chain(stages: tuple[Stage, ...], calls: list[Call], retried: bool) -> Any:
    """``run_task``'s chain, its arguments resolved; ``retried``: Ray runs the call
    again, so some of its tasks may have finished already."""
    recorded, crashed = _after_crash(stages) if retried else (None, None)
    value: Any = None
    #: The slot the task before handed on to this one (the same pool, nobody waiting).
    handed: Slot | None = None
    for i, (stage, (function, args, kwargs, deps)) in enumerate(zip(stages, calls, strict=True)):
        if i > 0:
            args, kwargs = _place(stage.slot, value, args, kwargs)
        args, kwargs, ready, again = _resolve(args, kwargs)
        finals, deps, deps_ready = _follow_deps(deps)
        if not (ready and deps_ready):
            # Ray waits for the refs now in the arguments; no worker blocks meanwhile.
            if handed is not None:
                handed.give_back()  # the call submitted takes its own
            rest = [(function, *again, deps), *map(_as_resolved, calls[i + 1 :])]
            return Continued(submit_chain(stages[i:], rest))
        if finals:
            args, kwargs = _swap_refs(args, finals), _swap_refs(kwargs, finals)
        if recorded is not None:
            standin = recorded.standin(stage.ctx.task_id, stage.ctx.completes)
            if standin is not NOT_RECORDED:
                if handed is not None:
                    handed.give_back()
                    handed = None
                value = standin
                continue
        crashes = crashed[1] if crashed is not None and crashed[0] == stage.ctx.task_id else 0
        rest = [(function, *again, deps), *map(_as_resolved, calls[i + 1 :])]
        slot = handed or Slot.for_stage(stage, retried)
        handed = None
        if slot is not None and not slot.held:
            # Every slot is taken: the manager waits for one, holding no CPU, and the
            # rest of the chain runs once it is granted.
            wait = find_manager(stage.ctx.config).slot.remote(stage.ctx)
            gated = replace(stage, gated=True)
            return Continued(submit_chain((gated, *stages[i + 1 :]), rest, wait))
        if slot is not None and i + 1 < len(stages):
            slot.offer(stages[i + 1].ctx)
        try:
            value = _run(
                stage.ctx, stage.function_key, function, args, kwargs, crashes, stage.attempts, slot
            )
        finally:
            if slot is not None:
                slot.give_back()
        if slot is not None:
            handed = slot.heir()
        if isinstance(value, Backoff):
            # The next attempt waits in the manager, holding no CPU either.
            wait = find_manager(stage.ctx.config).backoff.remote(stage.ctx, value.wake_at)
            again_stage = replace(stage, attempts=value.failed, gated=True, holds_slot=False)
            return Continued(submit_chain((again_stage, *stages[i + 1 :]), rest, wait))
    return value


@dataclass
class Slot:
    """A running task's slot of its pool, held by this process until given back: with
    the task's finish (one transaction), or on its own when the task ends otherwise."""

    ctx: TaskContext
    pool: str
    held: bool
    #: Whether this process renews its lease (a slot taken at submission is leased to
    #: the workflow manager that took it).
    renewed: bool = True
    #: The next task of the chain, in the same pool: the task's finish hands the slot
    #: on to it, unless someone waits in the pool's line (``offer``).
    heir_ctx: TaskContext | None = None
    #: Whether the finish handed it on.
    handed: bool = False

    @classmethod
    def for_stage(cls, stage: Stage, retried: bool) -> Slot | None:
        """The stage's slot: taken at submission (``Stage.holds_slot``), or taken now,
        if one is free (else ``held`` is False); None outside a pool. A call Ray runs
        again takes it over, as its worker renews it from now on."""
        ctx, pool = stage.ctx, stage.ctx.options.pool
        if pool is None:
            return None
        if stage.holds_slot and not retried:
            return cls(ctx, pool, held=True, renewed=False)
        store = handles(ctx.config).store
        held = store.try_slot(
            pool, ctx.workflow_id, ctx.task_id, ctx.options.priority, HELD.owner, POOL_LEASE_TTL
        )
        if held:
            HELD.hold(ctx.config)
        return cls(ctx, pool, held)

    def offer(self, ctx: TaskContext) -> None:
        """Offer the slot to the chain's next task, ``ctx``, if it runs in the same pool."""
        self.heir_ctx = ctx if ctx.options.pool == self.pool else None

    @property
    def hand_to(self) -> str | None:
        return None if self.heir_ctx is None else self.heir_ctx.task_id

    def finished(self, finish: TaskFinish) -> None:
        """The task's finish gave the slot back, or handed it on."""
        if finish.handed:
            self.held, self.handed = False, True
        else:
            self._gone(finish.waiting)

    def heir(self) -> Slot | None:
        """The slot, held now by the task it was handed on to."""
        if not self.handed or self.heir_ctx is None:
            return None
        return Slot(self.heir_ctx, self.pool, held=True, renewed=self.renewed)

    def give_back(self) -> None:
        """Give the slot back, if the task's finish did not."""
        if not self.held:
            return
        ctx = self.ctx
        try:
            waiting = handles(ctx.config).store.release_slot(
                self.pool, ctx.workflow_id, ctx.task_id
            )
        except Exception:  # its lease runs out instead (at once here: this process lives on)
            logger.warning("Could not give back a slot of pool %s", self.pool, exc_info=True)
            waiting = False
        self._gone(waiting)

    def _gone(self, waiting: bool) -> None:
        # If tasks wait for a slot, wake the manager that grants them.
        self.held = False
        if self.renewed:
            HELD.let_go(self.ctx.config)
        if waiting:
            find_manager(self.ctx.config).slot_freed.remote(self.pool)


def _retried() -> bool:
    """Whether Ray is running this call again (its worker died mid-call), so some of its
    tasks may have finished already. A first attempt asks the store nothing: Ray's own
    attempt number says it (not public API; where it is missing, every call asks)."""
    try:
        worker: Any = ray._private.worker.global_worker
        return bool(worker.core_worker.get_current_task_attempt_number() > 0)
    except AttributeError:
        return True


def _after_crash(
    stages: tuple[Stage, ...],
) -> tuple[GraphRunner | None, tuple[str, int] | None]:
    """For a call Ray runs again because its worker died: a runner that has the tasks
    the first run finished stand in for themselves, as on a resume (None if it finished
    none), and the task that was running when the worker died, with the number of
    worker deaths it has now. Those count against its ``max_retries`` as failed
    attempts do; past them it fails (``TaskCrashedError``), caught or not."""
    ctx = stages[0].ctx
    store = handles(ctx.config).store
    finished = store.finished_tasks(ctx.workflow_id, [stage.ctx.task_id for stage in stages])
    runner = None
    if finished:
        records = {record.task_id: record for record in store.load_tasks(ctx.workflow_id)}
        runner = GraphRunner(ctx.config, ctx.workflow_id, RayLauncher(ctx.config), records)
    running = next((s.ctx for s in stages if s.ctx.task_id not in finished), None)
    if running is None:
        return runner, None
    crashes = store.task_crashed(running.workflow_id, running.task_id)
    budget = running.options.max_retries
    if 0 <= budget < crashes:
        record = store.get_task(running.workflow_id, running.task_id)
        if (record.error or "").startswith(TIMEOUT_KILLED):
            # Its last worker was killed for running past its timeout: that is the error.
            timeout_s = running.options.timeout_s or 0.0
            raise TaskTimeoutError(running.task_id, timeout_s, "its worker was killed")
        error = TaskCrashedError(running.task_id, crashes, budget)
        store.task_failed(running.workflow_id, running.task_id, error.message, time.time(), 0)
        raise error
    return runner, (running.task_id, crashes)


# ------------------------------------------------------------------ one task

_functions: dict[str, Any] = {}


def _load_function(key: str, data: Any) -> Any:
    func = _functions.get(key)
    if func is None:
        func = cloudpickle.loads(data)
        _functions[key] = func
    return func


def _follow(value: Any) -> tuple[Any, bool]:
    """Follow a chain of ``Continued`` as far as it is ready; (value or ref, ready)."""
    if isinstance(value, Resolved):
        return value.value, True
    while isinstance(value, Continued):
        ready, _ = ray.wait([value.ref], timeout=0, fetch_local=False)
        if not ready:
            return value.ref, False
        value = ray.get(value.ref)
    return value, True


def _resolve(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], bool, tuple[tuple[Any, ...], dict[str, Any]]]:
    """The arguments followed to their final values, whether all are ready, and the
    arguments to submit the call with again if not: the refs still pending, and the
    rest as ``Resolved``."""
    all_ready = True
    run_args, again_args = [], []
    for arg in args:
        value, ready = _follow(arg)
        all_ready &= ready
        run_args.append(value)
        again_args.append(Resolved(value) if ready else value)
    run_kwargs, again_kwargs = {}, {}
    for key, arg in kwargs.items():
        value, ready = _follow(arg)
        all_ready &= ready
        run_kwargs[key] = value
        again_kwargs[key] = Resolved(value) if ready else value
    return tuple(run_args), run_kwargs, all_ready, (tuple(again_args), again_kwargs)


def _as_resolved(call: Call) -> Call:
    """A later stage's call, whose arguments Ray resolved already, to submit again."""
    function, args, kwargs, deps = call
    return (
        function,
        tuple(map(Resolved, args)),
        {key: Resolved(value) for key, value in kwargs.items()},
        tuple((Resolved(value), refs) for value, refs in deps),
    )


def _follow_deps(deps: tuple[Dep, ...]) -> tuple[dict[Any, Any], tuple[Dep, ...], bool]:
    """Follow upstream outputs inside container arguments to their final values.

    Returns the refs to swap in the containers (a continuation's output for its task's
    ref), the deps as followed so far, and whether all are final.
    """
    finals: dict[Any, Any] = {}
    followed: list[Dep] = []
    all_ready = True
    for resolved, (original, current) in deps:
        value = resolved.value if isinstance(resolved, Resolved) else resolved
        while isinstance(value, Continued):
            current = value.ref
            ready, _ = ray.wait([current], timeout=0, fetch_local=False)
            if not ready:
                all_ready = False
                break
            value = ray.get(current)
        else:
            if current != original:
                finals[original] = current
            followed.append((Resolved(value), (original, current)))
            continue
        followed.append((current, (original, current)))
    return finals, tuple(followed), all_ready


def _swap_refs(value: Any, finals: dict[Any, Any]) -> Any:
    """``value`` with the refs of ``finals`` swapped, inside any container."""
    if isinstance(value, ray.ObjectRef):
        return finals.get(value, value)
    if isinstance(value, list):
        return [_swap_refs(x, finals) for x in value]
    if isinstance(value, tuple):
        return tuple(_swap_refs(x, finals) for x in value)
    if isinstance(value, dict):
        return {k: _swap_refs(x, finals) for k, x in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(_swap_refs(x, finals) for x in value)
    return value


def _run(
    ctx: TaskContext,
    function_key: str,
    function: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    crashes: int = 0,
    tried: int = 0,
    slot: Slot | None = None,
) -> Any:
    """Run one workflow task with its retries, and record how it ended. ``crashes`` are
    attempts its workers died in, ``tried`` those that failed in earlier calls (before a
    backoff): they use up the same ``max_retries``. A pool ``slot`` goes back with the
    task's finish. Returns the output, or ``Backoff`` when the next attempt is to wait."""
    func = _load_function(function_key, function)
    store, blobs = handles(ctx.config)
    options = ctx.options
    started = time.time()
    NOTICES.started(ctx, started)
    attempts = 0
    result: Any = None
    error: BaseException | None = None
    with running(ctx):
        while True:
            attempts += 1
            log = AttemptLog(started if attempts == 1 else time.time())
            NOTICES.watch(ctx, log)

            def killed(timeout: TaskTimeoutError, log: AttemptLog = log) -> None:
                # The attempt would not stop: record it before its worker is killed.
                log.write(f"{TIMEOUT_KILLED} {timeout.message}\n")
                NOTICES.finished(ctx)
                store.count({TIMEOUTS: 1})
                store.task_failed(
                    ctx.workflow_id,
                    ctx.task_id,
                    f"{TIMEOUT_KILLED} {timeout.message}",
                    started,
                    0,
                    log=(log.started_at, log.text()),
                )

            try:
                with capture(log), time_limit(ctx.task_id, options.timeout_s, killed):
                    result = func(*args, **kwargs)
                break
            except Exception as caught:
                log.write(_describe(caught))
                failed = tried + attempts + crashes
                timed_out = isinstance(caught, TaskTimeoutError)
                if _should_retry(options, caught, failed):
                    store.count({RETRIES: 1, TIMEOUTS: int(timed_out)})
                    delay = options.retry.delay(failed) if options.retry is not None else 0.0
                    # The run's on_retry and retry notifiers hear of it (with the log).
                    store.task_retrying(
                        ctx.workflow_id,
                        ctx.task_id,
                        log.started_at,
                        _describe(caught),
                        "" if delay > 0 else log.text(),
                    )
                    if delay > 0 and options.retry is not None:
                        flushed = NOTICES.finished(ctx)
                        wake_at = time.time() + delay
                        store.task_backoff(
                            ctx.workflow_id,
                            ctx.task_id,
                            _describe(caught),
                            started,
                            attempts - (1 if flushed else 0),
                            wake_at,
                            failed + 1,
                            options.retry.max_attempts,
                            log=(log.started_at, log.text()),
                        )
                        return Backoff(wake_at, tried + attempts)
                    continue
                if timed_out:
                    store.count({TIMEOUTS: 1})
                if options.catch_exceptions:
                    result, error = None, caught
                    break
                flushed = NOTICES.finished(ctx)
                store.task_failed(
                    ctx.workflow_id,
                    ctx.task_id,
                    _describe(caught),
                    started,
                    attempts - (1 if flushed else 0),
                    log=(log.started_at, log.text()),
                )
                raise
    flushed = NOTICES.finished(ctx)
    delta = attempts - (1 if flushed else 0)
    if isinstance(result, Continuation):
        # With catch_exceptions, the continuation's errors are caught where it ends.
        return _continue(ctx, result, started, delta, _log_entry(log))
    if options.catch_exceptions:
        result = (result, error)
    checkpoint = None
    try:
        if options.checkpoint:
            checkpoint = make_checkpoint(result, "value", blobs, ctx.workflow_id, ctx.task_id)
    except CheckpointError as failure:
        log.write(failure.message + "\n")
        store.task_failed(
            ctx.workflow_id, ctx.task_id, failure.message, started, delta, log=_log_entry(log)
        )
        raise
    finished = store.task_finished(
        ctx.workflow_id,
        ctx.task_id,
        checkpoint,
        preview(result),
        started,
        delta,
        completes=ctx.completes,
        log=_log_entry(log),
        graph_output=ctx.graph_output,
        pool=None if slot is None else slot.pool,
        hand_to=None if slot is None else slot.hand_to,
    )
    if slot is not None:
        slot.finished(finished)
    return FinalOutput(result) if finished.outcome else result


@dataclass(frozen=True)
class Backoff:
    """What ``_run`` returns when a failed attempt is to be tried again at ``wake_at``,
    ``failed`` attempts having failed so far (worker deaths aside)."""

    wake_at: float
    failed: int


def _log_entry(log: AttemptLog) -> tuple[float, str] | None:
    text = log.text()
    return (log.started_at, text) if text else None


def _should_retry(options: TaskOptions, error: Exception, attempts: int) -> bool:
    retry = options.retry_exceptions
    if retry is False or (retry is not True and not isinstance(error, retry)):
        return False
    return options.max_retries < 0 or attempts <= options.max_retries


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _continue(
    ctx: TaskContext,
    continuation: Continuation,
    started: float,
    delta: int,
    log: tuple[float, str] | None,
) -> Any:
    store, blobs = handles(ctx.config)
    built: list[Graph] = []

    def expand(reserve: ReserveIds) -> tuple[Checkpoint, list[NewTask]]:
        # Built inside the transaction that reserves its ids: a level of recursion
        # costs one round trip to the store.
        graph = build_graph(continuation.dag, reserve=reserve, defaults=ctx.defaults)
        if ctx.options.catch_exceptions:
            graph = catching(graph, f"{ctx.task_id}.catch_exceptions")
        checkpoint = make_checkpoint(graph, "continuation", blobs, ctx.workflow_id, ctx.task_id)
        built[:] = [graph]
        return checkpoint, new_task_rows(graph, parent_task_id=ctx.task_id)

    try:
        status = store.task_continued(ctx.workflow_id, ctx.task_id, started, delta, expand, log=log)
    except DatabaseError:
        raise
    except WorkflowError as bad:  # a continuation that cannot be built or checkpointed
        store.task_failed(ctx.workflow_id, ctx.task_id, bad.message, started, delta)
        raise
    graph = built[0]
    if status == WorkflowStatus.CANCELED:
        # The manager cancels the tasks it submitted; this stops the ones continuations add.
        raise WorkflowCancellationError(ctx.workflow_id)
    # Submitted from this worker, not through the manager: routing every expansion
    # through one actor makes it the bottleneck of a deep recursion.
    runner = GraphRunner(ctx.config, ctx.workflow_id, InPlaceLauncher(ctx.config, ctx))
    output = runner.submit(graph, completes=(ctx.task_id, *ctx.completes))
    # Its output's chain ran here to the end: the task's output is final already.
    return output.value if isinstance(output, Inline) else Continued(output)


def _place(
    slot: int | str | None, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Put the previous stage's output where this stage takes it."""
    if isinstance(slot, int):
        return (*args[:slot], value, *args[slot + 1 :]), kwargs
    assert slot is not None
    return args, {**kwargs, slot: value}


# ------------------------------------------------------------------ submitting

_remote_run_task = ray.remote(run_task)
_with_options: dict[str, Any] = {}


def submit_chain(stages: tuple[Stage, ...], calls: list[Call], gate: Any = None) -> ray.ObjectRef:
    """Submit a chain of tasks as one Ray call; its ref is the last task's output. A
    gated chain (``Stage.gated``) runs once ``gate`` has resolved.

    The stages share their Ray options (``GraphRunner`` chains only such tasks).
    """
    ray_options = stages[0].ctx.ray_options
    budgets = [stage.ctx.options.max_retries for stage in stages]
    # Ray retries a call whose worker died; each task counts those deaths against its
    # own budget (``_after_crash``), so the call may be retried as often as all of them,
    # and once more, in which the task past its budget fails with a clear error.
    retries = -1 if min(budgets) < 0 else sum(budgets) + 1
    key = repr((sorted(ray_options.items()), retries))
    remote = _with_options.get(key)
    if remote is None:
        # A task's own ``enable_task_events`` option wins over the default.
        options = {"enable_task_events": RAY_TASK_EVENTS, **ray_options, "max_retries": retries}
        remote = _remote_run_task.options(**options)
        _with_options[key] = remote
    return remote.remote(pack(stages), *flatten(stages, calls, gate))


@dataclass(frozen=True)
class RayLauncher:
    """``GraphRunner``'s launcher on a Ray cluster: chains run as ``run_task`` calls,
    waits as coroutines of the database's manager actor (they hold no CPU slot).

    With a ``slot_owner`` (the workflow manager's), the pool slots of tasks that can
    start at once are taken as they are submitted, in one transaction, and leased to
    it: Ray stops the tasks a process submitted when that process dies, so its lease
    lasts no longer than they do. A worker's launcher has none: the tasks of a
    continuation take their slots as they start, each leased to its own worker."""

    config: StoreConfig
    slot_owner: str | None = field(default=None, kw_only=True)
    runs_here = False

    def chain(
        self, stages: tuple[Stage, ...], calls: list[Call], gate: Any = None
    ) -> ray.ObjectRef:
        return submit_chain(stages, calls, gate)

    def wait(self, ctx: TaskContext, kind: str, args: tuple[Any, ...]) -> ray.ObjectRef:
        ref: ray.ObjectRef = find_manager(self.config).wait.remote(ctx, kind, *args)
        return ref

    def backoff(self, ctx: TaskContext, wake_at: float) -> ray.ObjectRef:
        ref: ray.ObjectRef = find_manager(self.config).backoff.remote(ctx, wake_at)
        return ref

    def here(self, stages: tuple[Stage, ...], calls: list[Call]) -> Any:
        return NOT_RUN

    def take_slots(self, workflow_id: str, wanted: dict[str, list[tuple[str, int]]]) -> set[str]:
        if self.slot_owner is None:
            return set()
        store = handles(self.config).store
        taken: set[str] = set()
        for pool, tasks in sorted(wanted.items()):
            taken.update(
                store.take_slots(pool, workflow_id, tasks, self.slot_owner, POOL_LEASE_TTL)
            )
        return taken


#: How many continuations deep a worker runs one of a continuation's tasks itself
#: (``InPlaceLauncher``); deeper, it submits them all, and the stack stays short.
IN_PLACE_DEPTH = 16
_in_place = threading.local()


@dataclass(frozen=True)
class InPlaceLauncher(RayLauncher):
    """The launcher of a continuation expanded in a worker, which runs the chains
    ``GraphRunner`` offers (those whose inputs are all values known here, one at a time,
    the others held back meanwhile) in the Ray call of the task that returned it. That
    spares Ray calls, and the tasks that take their outputs get final values, where they
    would find a continuation's ``Continued`` and have to be submitted again.

    Only a chain that this call could have run as its own: the same Ray options (so the
    same resources), no scheduling strategy, no pool, no timeout, arguments that hold no
    ObjectRef for Ray to resolve, and a task that returned it holding no pool slot."""

    parent: TaskContext
    runs_here = True

    def here(self, stages: tuple[Stage, ...], calls: list[Call]) -> Any:
        depth = getattr(_in_place, "depth", 0)
        if depth >= IN_PLACE_DEPTH or not self._fits(stages, calls):
            return NOT_RUN
        _in_place.depth = depth + 1
        try:
            # Not retried, whatever this call's attempt: these tasks start here.
            return _run_chain(stages, calls, retried=False)
        except Exception as error:
            # The tasks that take its output fail, or catch it, as they would have had it
            # failed in a call of its own: Ray fails a task whose argument holds an error.
            failure = ray.exceptions.RayTaskError(
                stages[-1].ctx.task_id, traceback.format_exc(), error
            )
            return Continued(ray.put(failure))
        finally:
            _in_place.depth = depth

    def _fits(self, stages: tuple[Stage, ...], calls: list[Call]) -> bool:
        if self.parent.options.pool is not None:
            return False
        for stage, (function, args, kwargs, deps) in zip(stages, calls, strict=True):
            ctx = stage.ctx
            if (
                isinstance(function, ray.ObjectRef)
                or ctx.ray_options != self.parent.ray_options
                or "scheduling_strategy" in ctx.ray_options
                or ctx.options.pool is not None
                or ctx.options.timeout_s is not None
                or deps
                or any(isinstance(arg, ray.ObjectRef) for arg in (*args, *kwargs.values()))
            ):
                return False
        return True
