"""Submitting a ``Graph`` to Ray: every task at once, upstream ObjectRefs as arguments.

On a resume the runner is given the tasks' recorded state: a checkpointed task is not
submitted (its stored value stands in), a task that had returned a continuation has
its stored continuation submitted instead, and only tasks something still needs run.

The runner submits through a ``Launcher`` it is given: the worker module owns the Ray
task that runs chains, and the manager actor runs waits.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import ray

from executor.checkpoint import read_checkpoint
from executor.config import StoreConfig, handles
from executor.dag import Graph, TaskSpec, Upstream
from executor.stages import NOT_RECORDED, Call, Continued, Stage, TaskContext
from executor.status import TaskStatus
from executor.store import NewTask, TaskRecord

#: Functions larger than this travel as one shared object instead of inline per task.
_INLINE_FUNCTION_BYTES = 64 * 1024


def new_task_rows(graph: Graph, parent_task_id: str | None = None) -> list[NewTask]:
    return [
        NewTask(
            task_id=spec.task_id,
            name=spec.name,
            upstream=spec.upstream,
            user_metadata=spec.options.user_metadata,
            parent_task_id=parent_task_id,
        )
        for spec in graph.tasks.values()
    ]


class Launcher(Protocol):
    """How a runner puts work on the cluster."""

    def chain(self, stages: tuple[Stage, ...], calls: list[Call]) -> ray.ObjectRef:
        """Submit a chain of tasks as one Ray call; its ref is the last task's output."""

    def wait(self, ctx: TaskContext, kind: str, args: tuple[Any, ...]) -> ray.ObjectRef:
        """Submit a ``sleep`` or ``wait_for_event`` task (``kind``); its ref is its output."""


class GraphRunner:
    def __init__(
        self,
        config: StoreConfig,
        workflow_id: str,
        launcher: Launcher,
        state: dict[str, TaskRecord] | None = None,
    ) -> None:
        self.config = config
        self.workflow_id = workflow_id
        self.launcher = launcher
        #: Recorded task state on a resume; None for a fresh run (nothing is done yet).
        self.state = state
        self._functions: dict[str, Any] = {}
        #: The tasks this runner submitted, each with its upstream tasks' refs, so a
        #: cancel can stop them (see ``cancelable``).
        #: The tasks this runner submitted: (ref, its upstream tasks' refs, whether it is a
        #: chain of functions run by a worker rather than a wait run by the manager).
        self.submitted: list[tuple[ray.ObjectRef, list[ray.ObjectRef], bool]] = []

    def submit(self, graph: Graph, completes: tuple[str, ...] = ()) -> Any:
        """Submit what the graph's output still needs; return the output's ref."""
        refs: dict[str, Any] = {}
        for chain in self._chains(graph):
            last = chain[-1][0]
            own_completes = completes if last == graph.output else ()
            refs[last] = self._submit_chain(graph, chain, refs, own_completes)
        return refs[graph.output]

    def _chains(self, graph: Graph) -> list[list[tuple[str, int | str | None]]]:
        """The needed tasks, topologically ordered, cut into chains of one Ray call each:
        each task with where it takes its upstream's output in the chain (None first).

        A task joins its upstream's chain when it is that upstream's only consumer, takes
        its output whole, and has the same Ray options and no scheduling strategy of its
        own: it would only wait for the upstream, and Ray would run it by its data.
        Chaining spares a Ray call per task.
        """
        needed = self._needed(graph)
        consumers = Counter(u for task_id in needed for u in set(graph.tasks[task_id].upstream))
        chains: list[list[tuple[str, int | str | None]]] = []
        chain_of: dict[str, list[tuple[str, int | str | None]]] = {}
        for task_id in needed:
            spec = graph.tasks[task_id]
            chain, slot = None, None
            if len(spec.upstream) == 1:
                upstream = spec.upstream[0]
                joinable = chain_of.get(upstream)
                if (
                    joinable is not None
                    and joinable[-1][0] == upstream
                    and consumers[upstream] == 1
                    and upstream != graph.output
                ):
                    slot = self._slot_if_fused(graph.tasks[upstream], spec)
                    chain = joinable if slot is not None else None
            if chain is None:
                chain = []
                chains.append(chain)
            chain.append((task_id, slot))
            chain_of[task_id] = chain
        return chains

    def _slot_if_fused(self, upstream: TaskSpec, spec: TaskSpec) -> int | str | None:
        """Where ``spec`` takes ``upstream``'s output if it may run in its call; else None."""
        if not (
            upstream.kind == spec.kind == "function"
            and upstream.ray_options == spec.ray_options
            # A chosen strategy (SPREAD, a node, a placement group) places each task on
            # purpose; Ray's default keeps a chain with its data, as chaining does.
            and "scheduling_strategy" not in spec.ray_options
            and self._runs(upstream.task_id)
            and self._runs(spec.task_id)
        ):
            return None
        return _slot(spec, upstream.task_id)

    def _runs(self, task_id: str) -> bool:
        return not (self._is_done(task_id) or self._continued(task_id))

    def _record(self, task_id: str) -> TaskRecord | None:
        return None if self.state is None else self.state.get(task_id)

    def _is_done(self, task_id: str) -> bool:
        record = self._record(task_id)
        return (
            record is not None
            and record.status == TaskStatus.SUCCESSFUL
            and record.output_task_id is not None
        )

    def _needed(self, graph: Graph) -> list[str]:
        """Topologically ordered tasks the output depends on, stopping at checkpoints."""
        if self.state is None:
            return list(graph.tasks)
        needed = {graph.output}
        frontier = [graph.output]
        while frontier:
            task_id = frontier.pop()
            if self._is_done(task_id) or self._continued(task_id):
                continue
            for upstream in graph.tasks[task_id].upstream:
                if upstream not in needed:
                    needed.add(upstream)
                    frontier.append(upstream)
        return [task_id for task_id in graph.tasks if task_id in needed]

    def _continued(self, task_id: str) -> bool:
        record = self._record(task_id)
        return record is not None and record.status == TaskStatus.CONTINUED

    def standin(self, task_id: str, completes: tuple[str, ...]) -> Any:
        """What a recorded task stands in with instead of running: its checkpointed
        value, or (as ``Continued``) its stored continuation, submitted; else
        ``NOT_RECORDED``."""
        store, blobs = handles(self.config)
        if self._is_done(task_id):
            record = self._record(task_id)
            assert record is not None
            assert record.output_task_id is not None
            checkpoint = store.load_checkpoint(self.workflow_id, record.output_task_id)
            if checkpoint is not None:
                return read_checkpoint(checkpoint, blobs)
        if self._continued(task_id):
            checkpoint = store.load_checkpoint(self.workflow_id, task_id)
            if checkpoint is not None and checkpoint.kind == "continuation":
                continuation: Graph = read_checkpoint(checkpoint, blobs)
                return Continued(self.submit(continuation, completes=(task_id, *completes)))
        return NOT_RECORDED

    def _submit_chain(
        self,
        graph: Graph,
        chain: list[tuple[str, int | str | None]],
        refs: dict[str, Any],
        completes: tuple[str, ...],
    ) -> Any:
        head = graph.tasks[chain[0][0]]
        if len(chain) == 1:
            standin = self.standin(head.task_id, completes)
            if isinstance(standin, Continued):
                return standin.ref
            if standin is not NOT_RECORDED:
                return ray.put(standin)

        chained = {task_id for task_id, _ in chain}

        def fill(value: Any) -> Any:
            if isinstance(value, Upstream):
                # A task in this chain has no ref: the next stage's slot takes its value.
                return None if value.task_id in chained else refs[value.task_id]
            if isinstance(value, list):
                return [fill(x) for x in value]
            if isinstance(value, tuple):
                return tuple(fill(x) for x in value)
            if isinstance(value, dict):
                return {k: fill(x) for k, x in value.items()}
            if isinstance(value, (set, frozenset)):
                return type(value)(fill(x) for x in value)
            return value

        def context(task_id: str) -> TaskContext:
            spec = graph.tasks[task_id]
            return TaskContext(
                config=self.config,
                workflow_id=self.workflow_id,
                task_id=task_id,
                options=spec.options,
                ray_options=spec.ray_options,
                completes=completes if task_id == chain[-1][0] else (),
                graph_output=task_id == graph.output,
            )

        upstream_refs = [refs[u] for u in head.upstream if u in refs]
        if head.kind != "function":
            # Waits are coroutines in the manager actor: they hold no CPU slot.
            ref = self.launcher.wait(context(head.task_id), head.kind, fill(head.args))
            self.submitted.append((ref, upstream_refs, False))
            return ref
        stages, calls = [], []
        for task_id, slot in chain:
            spec = graph.tasks[task_id]
            kwargs = fill(spec.kwargs)
            deps = tuple((refs[u], (refs[u], refs[u])) for u in spec.nested)
            stages.append(
                Stage(
                    ctx=context(task_id),
                    function_key=spec.function_key,
                    n_args=len(spec.args),
                    kwarg_names=tuple(kwargs),
                    slot=slot,
                    n_deps=len(deps),
                )
            )
            function = self._function(graph, spec.function_key)
            calls.append((function, fill(spec.args), kwargs, deps))
        ref = self.launcher.chain(tuple(stages), calls)
        self.submitted.append((ref, upstream_refs, True))
        return ref

    def cancelable(self) -> list[tuple[ray.ObjectRef, bool]]:
        """The submitted tasks that may be cancelled directly, downstream first, each with
        whether it runs in a worker (which may be stopped by force).

        A task still waiting on an upstream task is left out: it fails when that upstream
        is cancelled. Cancelling it directly races Ray resolving its dependencies and
        crashes the cancelling process (reference_counter.cc "submitted_task_ref_count >
        0", ray-project/ray#56123; reproduced on Ray 2.60 by cancelling a fresh
        two-task chain).
        """
        chosen = []
        for ref, upstream, in_worker in reversed(self.submitted):
            if upstream:
                _, waiting = ray.wait(
                    upstream, num_returns=len(upstream), timeout=0, fetch_local=False
                )
                if waiting:
                    continue
            chosen.append((ref, in_worker))
        return chosen

    def _function(self, graph: Graph, key: str) -> Any:
        function = self._functions.get(key)
        if function is None:
            data = graph.functions[key]
            function = data if len(data) <= _INLINE_FUNCTION_BYTES else ray.put(data)
            self._functions[key] = function
        return function


def _slot(spec: TaskSpec, upstream: str) -> int | str | None:
    """Where ``spec`` takes ``upstream``'s output, if in exactly one top-level argument
    and nowhere else; a chain hands it over only there (nested, Ray passes a ref)."""
    places: list[int | str] = [i for i, arg in enumerate(spec.args) if _is(arg, upstream)]
    places += [name for name, arg in spec.kwargs.items() if _is(arg, upstream)]
    if len(places) != 1 or _count(upstream, (spec.args, spec.kwargs)) != 1:
        return None
    return places[0]


def _is(value: Any, upstream: str) -> bool:
    # Not ``==``: an argument may be an array, whose ``==`` is elementwise.
    return isinstance(value, Upstream) and value.task_id == upstream


def _count(upstream: str, value: Any) -> int:
    if _is(value, upstream):
        return 1
    if isinstance(value, (list, tuple)):
        return sum(_count(upstream, x) for x in value)
    if isinstance(value, dict):
        return sum(_count(upstream, x) for x in value.values())
    return 0
