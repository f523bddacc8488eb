"""Submitting a ``Graph`` to Ray: every task at once, upstream ObjectRefs as arguments.

On a resume the runner is given the tasks' recorded state: a checkpointed task is not
submitted (its stored value stands in), a task that had returned a continuation has
its stored continuation submitted instead, and only tasks something still needs run.

The runner submits through a ``Launcher`` it is given: the worker module owns the Ray
task that runs chains, and the manager actor runs waits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import ray

from executor.checkpoint import read_checkpoint
from executor.config import StoreConfig, handles
from executor.dag import Graph, TaskSpec, Upstream
from executor.held_back import HeldBack
from executor.stages import NOT_RECORDED, Call, Continued, Stage, TaskContext
from executor.status import TaskStatus
from executor.store import Checkpoint, NewTask, TaskRecord

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
            pool=spec.options.pool,
        )
        for spec in graph.tasks.values()
    ]


class Launcher(Protocol):
    """How a runner puts work on the cluster."""

    #: Whether ``here`` may run a chain in this process (else it never does).
    runs_here: bool

    def chain(
        self, stages: tuple[Stage, ...], calls: list[Call], gate: Any = None
    ) -> ray.ObjectRef:
        """Submit a chain of tasks as one Ray call; its ref is the last task's output. A
        gated chain (``Stage.gated``) runs once ``gate`` resolves."""

    def wait(self, ctx: TaskContext, kind: str, args: tuple[Any, ...]) -> ray.ObjectRef:
        """Submit a ``sleep`` or ``wait_for_event`` task (``kind``); its ref is its output."""

    def backoff(self, ctx: TaskContext, wake_at: float) -> ray.ObjectRef:
        """Wait, holding no CPU, until a retrying task's next attempt may start; the
        ref resolves then."""

    def here(self, stages: tuple[Stage, ...], calls: list[Call]) -> Any:
        """Run a chain in this process instead of submitting it, if it may: its last
        task's output (a value, or ``Continued``); else ``NOT_RUN``, to submit it."""

    def take_slots(self, workflow_id: str, wanted: dict[str, list[tuple[str, int]]]) -> set[str]:
        """Take pool slots, before submitting them, for tasks that can start at once
        (``wanted``: pool -> (task_id, priority)), if this launcher's process holds slots
        for the tasks it submits; the task ids that hold one now. The others take
        theirs as they start."""


#: Tasks run in one Ray call, each with where it takes the one before's output.
Chain = list[tuple[str, int | str | None]]

#: What a launcher's ``here`` returns for a chain it did not run.
NOT_RUN: Any = object()


@dataclass(frozen=True)
class Inline:
    """A finished task's value, passed to the tasks that take it as it is, not as a ref."""

    value: Any


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
        #: Checkpoints read ahead for the finished tasks about to stand in (``_prefetch``).
        self._checkpoints: dict[str, Checkpoint] = {}
        #: Tasks whose values the tasks being submitted take nested in an argument.
        self._nested: set[str] = set()
        #: The tasks this runner submitted: (ref, its upstream tasks' refs, whether it is a
        #: chain of functions run by a worker rather than a wait run by the manager).
        self.submitted: list[tuple[ray.ObjectRef, list[ray.ObjectRef], bool]] = []
        #: The tasks that may hold a pool slot taken as their chain was submitted
        #: (``take_slots``): task_id -> the ref of its chain.
        self.holding: dict[str, ray.ObjectRef] = {}

    def submit(self, graph: Graph, completes: tuple[str, ...] = ()) -> Any:
        """Submit what the graph's output still needs; return the output's ref, or, if
        its chain ran in this process (``Launcher.here``), its value as ``Inline``."""
        return self._submit(graph, self._needed(graph, [graph.output]), completes)[graph.output]

    def submit_detached(self, graph: Graph) -> list[Any]:
        """Submit the tasks to run that the output does not wait for (a task cleared
        without its downstream: what depends on it kept its checkpoint); return their
        refs, for the run to end only after them."""
        if self.state is None:
            return []
        needed = set(self._needed(graph, [graph.output]))
        detached = [t for t in graph.tasks if t not in needed and t in self.state and self._runs(t)]
        if not detached:
            return []
        refs = self._submit(graph, self._needed(graph, detached), ())
        return [ref for task_id, ref in refs.items() if self._runs(task_id)]

    def _submit(
        self, graph: Graph, needed: list[str], completes: tuple[str, ...]
    ) -> dict[str, Any]:
        """Submit ``needed`` in chains; the ref of each chain, by its last task."""
        self._prefetch(needed)
        outer = self._nested  # a stored continuation's graph is submitted within
        self._nested = {u for task_id in needed for u in graph.tasks[task_id].nested}
        refs: dict[str, Any] = {}
        chains = self._chains(graph, needed)
        holding = self._take_slots(graph, chains) if self.state is None else set()

        def put(chain: Chain, here: bool = False) -> bool:
            """Submit the chain, or run it here if ``here`` and the launcher will;
            whether it ran here."""
            last = chain[-1][0]
            own_completes = completes if last == graph.output else ()
            refs[last], ran = self._submit_chain(
                graph, chain, refs, own_completes, here, chain[0][0] in holding
            )
            return ran

        try:
            if self.state is None and self.launcher.runs_here:
                self._run_here_first(graph, chains, refs, put)
            else:
                for chain in chains:
                    put(chain)
        finally:
            self._nested = outer
        return refs

    def _run_here_first(
        self,
        graph: Graph,
        chains: list[Chain],
        refs: dict[str, Any],
        put: Callable[..., bool],
    ) -> None:
        """Submit a fresh continuation's chains, running those whose inputs are all
        values known here in place instead, one at a time, the first of them first:
        while one runs, the others ready to run here are held back (``HeldBack``), and
        submitted if it takes long. A chain that takes the output of one submitted is
        submitted as soon as that one is."""
        inputs = [_inputs(graph, chain) for chain in chains]
        pending = list(range(len(chains)))
        while pending:
            known = [i for i in pending if inputs[i] <= refs.keys()]
            local = [i for i in known if all(isinstance(refs[u], Inline) for u in inputs[i])]
            here = set(local)
            for i in known:
                if i not in here:
                    put(chains[i])
            left: set[int] = set()
            if local:
                first, rest = local[0], local[1:]
                held = HeldBack(rest, lambda i: put(chains[i]))
                try:
                    if not put(chains[first], here=True):
                        held.release()
                finally:
                    left = set(held.settle())
            done = set(known) - left
            pending = [i for i in pending if i not in done]

    def _chains(self, graph: Graph, needed: list[str]) -> list[Chain]:
        """The ``needed`` tasks (topologically ordered), cut into chains of one Ray call each:
        each task with where it takes its upstream's output in the chain (None first).

        A task joins its upstream's chain when it is that upstream's only consumer, takes
        its output whole, and has the same Ray options and no scheduling strategy of its
        own: it would only wait for the upstream, and Ray would run it by its data.
        Chaining spares a Ray call per task.
        """
        consumers = Counter(u for task_id in needed for u in set(graph.tasks[task_id].upstream))
        chains: list[Chain] = []
        chain_of: dict[str, Chain] = {}
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

    def _take_slots(self, graph: Graph, chains: list[Chain]) -> set[str]:
        """Pool slots taken for the chains that can start at once (their first task
        needs no other), one transaction per pool, rather than one by each as it starts."""
        wanted: dict[str, list[tuple[str, int]]] = {}
        for chain in chains:
            spec = graph.tasks[chain[0][0]]
            if spec.kind == "function" and spec.options.pool is not None and not spec.upstream:
                wanted.setdefault(spec.options.pool, []).append(
                    (spec.task_id, spec.options.priority)
                )
        if not wanted:
            return set()
        return self.launcher.take_slots(self.workflow_id, wanted)

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
            # A task waiting out a retry's backoff heads a call that waits for it.
            and self._backoff(spec.task_id) is None
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

    def _needed(self, graph: Graph, targets: list[str]) -> list[str]:
        """Topologically ordered tasks the targets depend on, stopping at checkpoints."""
        if self.state is None:
            return list(graph.tasks)
        needed = set(targets)
        frontier = list(targets)
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

    def _backoff(self, task_id: str) -> TaskRecord | None:
        """The record of a task that was waiting out a retry's backoff, if it was."""
        record = self._record(task_id)
        if record is None or record.status != TaskStatus.RETRYING or record.wake_at is None:
            return None
        return record

    def _prefetch(self, needed: list[str]) -> None:
        """Read the checkpoints the needed finished tasks stand in with, in one query."""
        if self.state is None:
            return
        wanted = []
        for task_id in needed:
            record = self._record(task_id)
            if self._is_done(task_id) and record is not None and record.output_task_id:
                wanted.append(record.output_task_id)
        if wanted:
            store = handles(self.config).store
            self._checkpoints.update(store.load_checkpoints(self.workflow_id, wanted))

    def standin(self, task_id: str, completes: tuple[str, ...]) -> Any:
        """What a recorded task stands in with instead of running: its checkpointed
        value, or (as ``Continued``) its stored continuation, submitted; else
        ``NOT_RECORDED``."""
        store, blobs = handles(self.config)
        if self._is_done(task_id):
            record = self._record(task_id)
            assert record is not None
            assert record.output_task_id is not None
            checkpoint = self._checkpoints.pop(record.output_task_id, None)
            if checkpoint is None:
                checkpoint = store.load_checkpoint(self.workflow_id, record.output_task_id)
            if checkpoint is not None:
                return read_checkpoint(checkpoint, blobs)
        if self._continued(task_id):
            checkpoint = store.load_checkpoint(self.workflow_id, task_id)
            if checkpoint is not None and checkpoint.kind == "continuation":
                continuation: Graph = read_checkpoint(checkpoint, blobs)
                output = self.submit(continuation, completes=(task_id, *completes))
                return output.value if isinstance(output, Inline) else Continued(output)
        return NOT_RECORDED

    def _submit_chain(
        self,
        graph: Graph,
        chain: Chain,
        refs: dict[str, Any],
        completes: tuple[str, ...],
        here: bool = False,
        holds_slot: bool = False,
    ) -> tuple[Any, bool]:
        """Submit one chain (``here``: or run it in this process, if the launcher will;
        ``holds_slot``: its first task's pool slot is taken); its output's ref or value,
        and whether it ran here."""
        head = graph.tasks[chain[0][0]]
        if len(chain) == 1:
            standin = self.standin(head.task_id, completes)
            if standin is not NOT_RECORDED:
                return self._handed_on(graph, head.task_id, standin), False

        chained = {task_id for task_id, _ in chain}

        def fill(value: Any) -> Any:
            if isinstance(value, Upstream):
                # A task in this chain has no ref: the next stage's slot takes its value.
                if value.task_id in chained:
                    return None
                found = refs[value.task_id]
                return found.value if isinstance(found, Inline) else found
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
                defaults=graph.defaults,
            )

        upstream_refs = [
            refs[u] for u in head.upstream if u in refs and not isinstance(refs[u], Inline)
        ]
        if head.kind != "function":
            # Waits are coroutines in the manager actor: they hold no CPU slot.
            ref = self.launcher.wait(context(head.task_id), head.kind, fill(head.args))
            self.submitted.append((ref, upstream_refs, False))
            return ref, False
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
        if holds_slot:
            stages[0] = replace(stages[0], holds_slot=True)
        gate = None
        retrying = self._backoff(head.task_id)
        if retrying is not None:
            # Resumed during a retry's backoff: it waits only what is left, and its
            # attempts go on from those that failed.
            assert retrying.wake_at is not None
            gate = self.launcher.backoff(stages[0].ctx, retrying.wake_at)
            stages[0] = replace(
                stages[0], attempts=max((retrying.next_attempt or 1) - 1, 0), gated=True
            )
        ran = self.launcher.here(tuple(stages), calls) if here and gate is None else NOT_RUN
        if ran is not NOT_RUN:
            return self._handed_on(graph, chain[-1][0], ran, ran_here=True), True
        ref = self.launcher.chain(tuple(stages), calls, gate)
        self.submitted.append((ref, upstream_refs, True))
        if holds_slot and head.options.pool is not None:
            # The slot may pass down the chain (``Slot.offer``), to any of its tasks in
            # the same pool.
            for stage in stages:
                if stage.ctx.options.pool == head.options.pool:
                    self.holding[stage.ctx.task_id] = ref
        return ref, False

    def _handed_on(self, graph: Graph, task_id: str, value: Any, ran_here: bool = False) -> Any:
        """A task's output that is already known (it stood in, or ran in this process), as
        the tasks that take it get it: a ``Continued``'s ref, else the value itself."""
        if isinstance(value, Continued):
            return value.ref
        # Taken whole as an argument, a value goes inline with each call that takes it
        # (Ray stores a large one itself); a value nested in another argument must be a
        # ref, and so must a stored value standing in for the output.
        if (task_id == graph.output and not ran_here) or task_id in self._nested:
            return ray.put(value)
        return Inline(value)

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


def _inputs(graph: Graph, chain: Chain) -> set[str]:
    """The tasks whose outputs a chain takes, other than its own."""
    own = {task_id for task_id, _ in chain}
    return {u for task_id in own for u in graph.tasks[task_id].upstream} - own


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
