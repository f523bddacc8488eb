"""What travels with each Ray call of a workflow: the tasks it runs and their context.

A Ray call runs a chain of workflow tasks, usually one (``GraphRunner`` chains a task
to its upstream when it is that upstream's only consumer). Each task of the chain is a
``Stage``: its ``TaskContext`` and where its arguments lie in the call's flat argument
list. The stages travel as one bytes argument (``pack``), which Ray barely pickles.
"""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import cloudpickle

from executor.config import StoreConfig
from executor.options import TaskOptions


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
    #: Workflow options its workflow gives every task that does not say otherwise (a
    #: registered workflow's ``pool`` and ``priority``); its continuations take them too.
    defaults: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Stage:
    """One task of a chain run in one Ray call: its context, and how its arguments lie
    in the call's flat argument list."""

    ctx: TaskContext
    function_key: str
    n_args: int
    kwarg_names: tuple[str, ...] = ()
    #: Where the previous stage's output goes: an index into the positional arguments,
    #: or a keyword. None for the first stage.
    slot: int | str | None = None
    #: How many refs of upstream outputs found inside container arguments follow the
    #: arguments, so Ray waits for them too (``Call``'s ``deps``).
    n_deps: int = 0
    #: Attempts of this task that failed already: a call submitted again after a retry's
    #: backoff goes on counting from them.
    attempts: int = 0
    #: Whether the call's flat arguments start with a gate: a ref Ray must resolve
    #: before the call runs (a retry's backoff, a pool slot granted), then ignored.
    gated: bool = False
    #: Whether its pool slot was taken when the chain was submitted, by the workflow
    #: manager that submitted it (``take_slots``): its worker takes none, and the task's
    #: finish gives it back.
    holds_slot: bool = False


#: An upstream output found inside a container argument: (what Ray hands the task at
#: the top level, (the ref in the container, the ref followed so far)). The top-level
#: entry makes Ray wait for the output; the task follows it to the final value (the
#: output of a task that returned a continuation is not its own ref) and puts that
#: value's ref in the container.
Dep = tuple[Any, tuple[Any, Any]]

#: A stage's function and arguments: (function or its ref, args, kwargs, deps).
Call = tuple[Any, tuple[Any, ...], dict[str, Any], tuple[Dep, ...]]


@dataclass(frozen=True)
class Continued:
    """The output of a task that returned a continuation: follow ``ref``."""

    ref: ray.ObjectRef


@dataclass(frozen=True)
class Resolved:
    """An argument a call already resolved, handed on as it is when the call submits the
    rest of its chain again: Ray resolves every top-level ObjectRef argument, and the
    value may itself be one (the output of a task that returned an ObjectRef)."""

    value: Any


@dataclass(frozen=True)
class FinalOutput:
    """The workflow's output, from the task whose finish also recorded the workflow
    SUCCESSFUL: the manager, the only one to receive it, need not write the outcome."""

    value: Any


class Continuation:
    """``workflow.continuation(dag)`` returned from inside a task."""

    def __init__(self, dag: Any) -> None:
        self.dag = dag


#: What a runner's ``standin`` returns for a task that must run.
NOT_RECORDED: Any = object()


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "gnomon_task", default=None
)


def current_task() -> TaskContext | None:
    """The workflow task running in this thread, if any."""
    return _current_task.get()


@contextmanager
def running(ctx: TaskContext) -> Iterator[None]:
    token = _current_task.set(ctx)
    try:
        yield
    finally:
        _current_task.reset(token)


def pack(stages: tuple[Stage, ...]) -> bytes:
    """A chain's stages as one bytes argument.

    Ray pickles an object argument with cloudpickle's pure-Python pickler, and a bytes
    argument hardly at all, so the stages go through the C pickler here. cloudpickle
    remains for what only it can pickle (an exception class from a driver's
    ``__main__`` in ``retry_exceptions``).
    """
    try:
        return pickle.dumps(stages, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(stages)


def unpack(packed: bytes) -> tuple[Stage, ...]:
    stages: tuple[Stage, ...] = pickle.loads(packed)
    return stages


def flatten(stages: tuple[Stage, ...], calls: list[Call], gate: Any = None) -> list[Any]:
    """Each stage's function and arguments in one list, so Ray resolves the ObjectRefs
    among them (after the ``gate``, for a gated chain); ``unflatten`` reverses it."""
    flat: list[Any] = [gate] if stages[0].gated else []
    for stage, (function, args, kwargs, deps) in zip(stages, calls, strict=True):
        flat.append(function)
        flat.extend(args)
        flat.extend(kwargs[name] for name in stage.kwarg_names)
        if deps:
            flat.extend(current for current, _ in deps)
            flat.append([refs for _, refs in deps])  # in a list, Ray leaves refs alone
    return flat


def unflatten(stages: tuple[Stage, ...], flat: tuple[Any, ...]) -> list[Call]:
    calls = []
    at = 1 if stages[0].gated else 0
    for stage in stages:
        function = flat[at]
        args = flat[at + 1 : at + 1 + stage.n_args]
        at += 1 + stage.n_args
        kwargs = dict(zip(stage.kwarg_names, flat[at : at + len(stage.kwarg_names)], strict=True))
        at += len(stage.kwarg_names)
        deps: tuple[Dep, ...] = ()
        if stage.n_deps:
            deps = tuple(zip(flat[at : at + stage.n_deps], flat[at + stage.n_deps], strict=True))
            at += stage.n_deps + 1
        calls.append((function, args, kwargs, deps))
    return calls
