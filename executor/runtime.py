"""What runs inside Ray workers: workflow tasks, checkpointed.

Each Ray call runs a chain of workflow tasks, usually one: ``GraphRunner`` chains a task
to its upstream when it is that upstream's only consumer, so a linear run of tasks costs
one Ray call, not one each (Dask fuses linear chains the same way). Every task in a
chain is still checkpointed before the next one starts. Calls are submitted with their
upstream ObjectRefs as arguments, so Ray moves data worker to worker and schedules the
graph itself. The wrapper here runs the user's function, retries application errors
when asked, writes the checkpoint and the task's row in one transaction, and expands
continuations.

A task that returned a continuation returns ``Continued(ref)``, where ``ref`` is the
continuation's output. A downstream task that receives one follows it; if the value is
not ready yet, the rest of its chain is submitted again with the ref as an argument
instead of blocking a worker, so continuations hold no CPU while they wait.
"""

from __future__ import annotations

import contextvars
import os
import pickle
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray import cloudpickle

from executor.checkpoint import make_checkpoint, preview
from executor.config import StoreConfig, handles
from executor.errors import CheckpointError, InvalidInputError, WorkflowCancellationError
from executor.logs import AttemptLog, capture
from executor.options import TaskOptions
from executor.status import WorkflowStatus

if TYPE_CHECKING:
    from executor.graph_runner import GraphRunner


@dataclass(frozen=True)
class TaskContext:
    """Everything a worker needs to run and record one task; small, pickled per call."""

    config: StoreConfig
    workflow_id: str
    task_id: str
    options: TaskOptions
    ray_options: dict[str, Any] = field(default_factory=dict)
    #: Tasks whose continuations end in this one; they finish when it does.
    completes: tuple[str, ...] = ()
    #: Whether this is its graph's output: only such a task's finish can complete the
    #: workflow (a continuation's output completes the task that returned it, and so on).
    graph_output: bool = True


@dataclass(frozen=True)
class Stage:
    """One task of a chain run in one Ray call (see ``GraphRunner``): its context, and
    how its arguments lie in the call's flat argument list."""

    ctx: TaskContext
    function_key: str
    n_args: int
    kwarg_names: tuple[str, ...] = ()
    #: Where the previous stage's output goes: an index into the positional arguments,
    #: or a keyword. None for the first stage.
    slot: int | str | None = None


@dataclass(frozen=True)
class Continued:
    """The output of a task that returned a continuation: follow ``ref``."""

    ref: ray.ObjectRef


@dataclass(frozen=True)
class FinalOutput:
    """The workflow's output, from the task whose finish also recorded the workflow
    SUCCESSFUL: the manager, the only one to receive it, need not write the outcome."""

    value: Any


class Continuation:
    """``workflow.continuation(dag)`` returned from inside a task."""

    def __init__(self, dag: Any) -> None:
        self.dag = dag


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "gnomon_task", default=None
)


def current_task() -> TaskContext | None:
    return _current_task.get()


@contextmanager
def _running(ctx: TaskContext) -> Iterator[None]:
    token = _current_task.set(ctx)
    try:
        yield
    finally:
        _current_task.reset(token)


# ------------------------------------------------------------------ start notices


class _StartNotices:
    """RUNNING marks and live logs, written in batches by a background thread.

    A task that finishes before its mark is flushed records its start in its finish
    write instead, so a short task costs one transaction, not two. A running task's log
    is written about once a second while it changes, so the dashboard can tail it.
    """

    #: How long a start may wait before it is written.
    DELAY = 0.2
    #: How often running tasks' logs are written while they change.
    LOG_INTERVAL = 1.0

    def __init__(self) -> None:
        self._pending: dict[tuple[StoreConfig, str, str], float] = {}
        self._logs: dict[tuple[StoreConfig, str, str], AttemptLog] = {}
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

    def watch(self, ctx: TaskContext, log: AttemptLog) -> None:
        with self._lock:
            self._logs[(ctx.config, ctx.workflow_id, ctx.task_id)] = log

    def finished(self, ctx: TaskContext) -> bool:
        """Forget the task's start and live log; True if its start had been written."""
        key = (ctx.config, ctx.workflow_id, ctx.task_id)
        with self._flushing, self._lock:
            self._logs.pop(key, None)
            return self._pending.pop(key, None) is None

    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=self.LOG_INTERVAL if self._logs else None)
            time.sleep(self.DELAY)
            self._wake.clear()
            with self._flushing:
                with self._lock:
                    batch, self._pending = self._pending, {}
                    logs = [(key, log) for key, log in self._logs.items() if log.dirty]
                starts: dict[tuple[StoreConfig, str], list[tuple[str, float]]] = {}
                for (config, workflow_id, task_id), at in batch.items():
                    starts.setdefault((config, workflow_id), []).append((task_id, at))
                live: dict[StoreConfig, list[tuple[str, str, float, str]]] = {}
                for (config, workflow_id, task_id), log in logs:
                    live.setdefault(config, []).append(
                        (workflow_id, task_id, log.started_at, log.text())
                    )
                try:
                    for (config, workflow_id), started in starts.items():
                        handles(config)[0].tasks_started(workflow_id, started)
                    for config, entries in live.items():
                        handles(config)[0].save_logs(entries)
                except Exception:  # marks and live logs are advisory; finish writes are not
                    pass


_notices = _StartNotices()


# ------------------------------------------------------------------ the task


_functions: dict[str, Any] = {}


def _load_function(key: str, data: Any) -> Any:
    func = _functions.get(key)
    if func is None:
        func = cloudpickle.loads(data)
        _functions[key] = func
    return func


def _follow(value: Any) -> tuple[Any, bool]:
    """Follow a chain of ``Continued`` as far as it is ready; (value or ref, ready)."""
    while isinstance(value, Continued):
        ready, _ = ray.wait([value.ref], timeout=0, fetch_local=False)
        if not ready:
            return value.ref, False
        value = ray.get(value.ref)
    return value, True


def _resolve(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict, bool]:
    all_ready = True
    new_args = []
    for arg in args:
        value, ready = _follow(arg)
        all_ready &= ready
        new_args.append(value)
    new_kwargs = {}
    for key, arg in kwargs.items():
        value, ready = _follow(arg)
        all_ready &= ready
        new_kwargs[key] = value
    return tuple(new_args), new_kwargs, all_ready


def run_task(packed: bytes, *flat: Any) -> Any:
    """The Ray task: a chain of workflow tasks, each fed the one before's output.

    ``packed`` is the chain's ``Stage``s as ``submit_task`` pickled them; ``flat`` holds
    each stage's function and arguments, so Ray resolves the ObjectRefs among them.
    """
    stages: tuple[Stage, ...] = pickle.loads(packed)
    calls = _unflatten(stages, flat)
    recorded = _recorded(stages) if _retried() else None
    value: Any = None
    for i, (stage, (function, args, kwargs)) in enumerate(zip(stages, calls, strict=True)):
        if i > 0:
            args, kwargs = _place(stage.slot, value, args, kwargs)
        args, kwargs, ready = _resolve(args, kwargs)
        if not ready:
            # Ray waits for the refs now in the arguments; no worker blocks meanwhile.
            rest = [(function, args, kwargs), *calls[i + 1 :]]
            return Continued(submit_task(stages[i:], rest))
        if recorded is not None:
            standin = recorded.standin(stage.ctx.task_id, stage.ctx.completes)
            if standin is not NOT_RECORDED:
                value = standin
                continue
        value = _run(stage.ctx, stage.function_key, function, args, kwargs)
    return value


#: What ``GraphRunner.standin`` returns for a task that must run.
NOT_RECORDED: Any = object()


def _retried() -> bool:
    """Whether Ray is running this call again (its worker died mid-call), so some of its
    tasks may have finished already. A first attempt asks the store nothing: Ray's own
    attempt number says it (not public API; where it is missing, every call asks)."""
    try:
        worker: Any = ray._private.worker.global_worker
        return bool(worker.core_worker.get_current_task_attempt_number() > 0)
    except AttributeError:
        return True


def _recorded(stages: tuple[Stage, ...]) -> GraphRunner | None:
    """For a retried call whose first run finished some of its tasks: a runner that has
    them stand in for themselves, as on a resume. None if it finished none."""
    from executor.graph_runner import GraphRunner

    ctx = stages[0].ctx
    store, _ = handles(ctx.config)
    if not store.any_finished(ctx.workflow_id, [stage.ctx.task_id for stage in stages]):
        return None
    records = {record.task_id: record for record in store.load_tasks(ctx.workflow_id)}
    return GraphRunner(ctx.config, ctx.workflow_id, records)


def _run(ctx: TaskContext, function_key: str, function: Any, args: tuple, kwargs: dict) -> Any:
    """Run one workflow task with its retries, and record how it ended."""
    func = _load_function(function_key, function)
    store, blobs = handles(ctx.config)
    options = ctx.options
    started = time.time()
    _notices.started(ctx, started)
    attempts = 0
    error: BaseException | None = None
    with _running(ctx):
        while True:
            attempts += 1
            log = AttemptLog(started if attempts == 1 else time.time())
            _notices.watch(ctx, log)
            try:
                with capture(log):
                    result = func(*args, **kwargs)
                break
            except Exception as caught:
                log.write(_describe(caught))
                if _should_retry(options, caught, attempts):
                    store.save_logs([(ctx.workflow_id, ctx.task_id, log.started_at, log.text())])
                    continue
                if options.catch_exceptions:
                    result, error = None, caught
                    break
                flushed = _notices.finished(ctx)
                store.task_failed(
                    ctx.workflow_id,
                    ctx.task_id,
                    _describe(caught),
                    started,
                    attempts - (1 if flushed else 0),
                    log=(log.started_at, log.text()),
                )
                raise
    if options.catch_exceptions:
        result = (result, error)
    flushed = _notices.finished(ctx)
    delta = attempts - (1 if flushed else 0)
    if isinstance(result, Continuation):
        return _continue(ctx, result, started, delta, _log_entry(log))
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
    )
    return FinalOutput(result) if finished else result


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
    from executor.dag import build_graph
    from executor.graph_runner import GraphRunner, new_task_rows

    store, blobs = handles(ctx.config)
    try:
        graph = build_graph(continuation.dag, prefix=ctx.task_id)
    except InvalidInputError as bad:
        store.task_failed(ctx.workflow_id, ctx.task_id, bad.message, started, delta)
        raise
    checkpoint = make_checkpoint(graph, "continuation", blobs, ctx.workflow_id, ctx.task_id)
    store.task_finished(
        ctx.workflow_id,
        ctx.task_id,
        checkpoint,
        None,
        started,
        delta,
        new_tasks=new_task_rows(graph, parent_task_id=ctx.task_id),
        log=log,
    )
    if store.get_workflow(ctx.workflow_id).status == WorkflowStatus.CANCELED:
        # The manager cancels the tasks it submitted; this stops the ones continuations add.
        raise WorkflowCancellationError(ctx.workflow_id)
    # Submitted from this worker, not through the manager: measured on fib(12), routing
    # every expansion through one actor made it the bottleneck (6-9 s against 4-5 s).
    runner = GraphRunner(ctx.config, ctx.workflow_id)
    return Continued(runner.submit(graph, completes=(ctx.task_id, *ctx.completes)))


#: Ray keeps an event stream of every task for its own dashboard, state API and
#: timeline. Gnomon records each task's state in its database, and the stream cost 10.6%
#: of the CPU of a plain three-task chain here (bench/task_events.py; about 1% of a
#: durable one), so it is off for Gnomon's tasks and manager calls unless
#: ``GNOMON_RAY_TASK_EVENTS=1`` (on every node).
RAY_TASK_EVENTS = os.environ.get("GNOMON_RAY_TASK_EVENTS", "0") not in ("", "0")

_remote_run_task = ray.remote(run_task)
_with_options: dict[str, Any] = {}

#: A stage's function and arguments: (function or its ref, args, kwargs).
Call = tuple[Any, tuple, dict]


def submit_task(stages: Sequence[Stage], calls: Sequence[Call]) -> ray.ObjectRef:
    """Submit a chain of tasks as one Ray call; its ref is the last task's output.

    The stages share their Ray options (``GraphRunner`` chains only such tasks).
    """
    ray_options = stages[0].ctx.ray_options
    key = repr(sorted(ray_options.items()))
    remote = _with_options.get(key)
    if remote is None:
        # A task's own ``enable_task_events`` option wins over the default.
        remote = _remote_run_task.options(**{"enable_task_events": RAY_TASK_EVENTS, **ray_options})
        _with_options[key] = remote
    flat: list[Any] = []
    for stage, (function, args, kwargs) in zip(stages, calls, strict=True):
        flat.append(function)
        flat.extend(args)
        flat.extend(kwargs[name] for name in stage.kwarg_names)
    return remote.remote(_pack(tuple(stages)), *flat)


def _unflatten(stages: tuple[Stage, ...], flat: tuple[Any, ...]) -> list[Call]:
    calls = []
    at = 0
    for stage in stages:
        function = flat[at]
        args = flat[at + 1 : at + 1 + stage.n_args]
        at += 1 + stage.n_args
        kwargs = dict(zip(stage.kwarg_names, flat[at : at + len(stage.kwarg_names)], strict=True))
        at += len(stage.kwarg_names)
        calls.append((function, args, kwargs))
    return calls


def _place(slot: int | str | None, value: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Put the previous stage's output where this stage takes it."""
    if isinstance(slot, int):
        return (*args[:slot], value, *args[slot + 1 :]), kwargs
    assert slot is not None
    return args, {**kwargs, slot: value}


def _pack(stages: tuple[Stage, ...]) -> bytes:
    """The chain's stages as one bytes argument.

    Ray pickles an object argument with cloudpickle's pure-Python pickler, and a bytes
    argument hardly at all: packing the context with the C pickler here saved 4-6% of a
    three-task workflow's CPU (manager and workers, measured side by side). cloudpickle
    remains for what only it can pickle (an exception class from a driver's ``__main__``
    in ``retry_exceptions``).
    """
    try:
        return pickle.dumps(stages, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(stages)
