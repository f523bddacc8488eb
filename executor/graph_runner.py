"""Submitting a ``Graph`` to Ray: every task at once, upstream ObjectRefs as arguments.

On a resume the runner is given the tasks' recorded state: a checkpointed task is not
submitted (its stored value stands in), a task that had returned a continuation has
its stored continuation submitted instead, and only tasks something still needs run.
"""

from __future__ import annotations

from typing import Any

import ray

from executor.checkpoint import read_checkpoint
from executor.config import StoreConfig, handles
from executor.dag import Graph, TaskSpec, Upstream
from executor.runtime import TaskContext, submit_task
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


class GraphRunner:
    def __init__(
        self,
        config: StoreConfig,
        workflow_id: str,
        state: dict[str, TaskRecord] | None = None,
    ) -> None:
        self.config = config
        self.workflow_id = workflow_id
        #: Recorded task state on a resume; None for a fresh run (nothing is done yet).
        self.state = state
        self._functions: dict[str, Any] = {}
        #: The tasks this runner submitted, each with its upstream tasks' refs, so a
        #: cancel can stop them (see ``cancelable``).
        self.submitted: list[tuple[ray.ObjectRef, list[ray.ObjectRef]]] = []

    def submit(self, graph: Graph, completes: tuple[str, ...] = ()) -> Any:
        """Submit what the graph's output still needs; return the output's ref."""
        refs: dict[str, Any] = {}
        for task_id in self._needed(graph):
            spec = graph.tasks[task_id]
            own_completes = completes if task_id == graph.output else ()
            refs[task_id] = self._submit_one(graph, spec, refs, own_completes)
        return refs[graph.output]

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

    def _submit_one(
        self, graph: Graph, spec: TaskSpec, refs: dict[str, Any], completes: tuple[str, ...]
    ) -> Any:
        store, blobs = handles(self.config)
        if self._is_done(spec.task_id):
            record = self._record(spec.task_id)
            assert record is not None and record.output_task_id is not None
            checkpoint = store.load_checkpoint(self.workflow_id, record.output_task_id)
            if checkpoint is not None:
                return ray.put(read_checkpoint(checkpoint, blobs))
        if self._continued(spec.task_id):
            checkpoint = store.load_checkpoint(self.workflow_id, spec.task_id)
            if checkpoint is not None and checkpoint.kind == "continuation":
                continuation: Graph = read_checkpoint(checkpoint, blobs)
                return self.submit(continuation, completes=(spec.task_id, *completes))

        def fill(value: Any) -> Any:
            if isinstance(value, Upstream):
                return refs[value.task_id]
            if isinstance(value, list):
                return [fill(x) for x in value]
            if isinstance(value, tuple):
                return tuple(fill(x) for x in value)
            if isinstance(value, dict):
                return {k: fill(x) for k, x in value.items()}
            return value

        ctx = TaskContext(
            config=self.config,
            workflow_id=self.workflow_id,
            task_id=spec.task_id,
            options=spec.options,
            ray_options=spec.ray_options,
            completes=completes,
        )
        if spec.kind != "function":
            # Waits are coroutines in the manager actor: they hold no CPU slot.
            from executor.manager import manager_for

            ref = manager_for(self.config).wait.remote(ctx, spec.kind, *fill(spec.args))
        else:
            ref = submit_task(
                ctx,
                spec.function_key,
                self._function(graph, spec.function_key),
                fill(spec.args),
                fill(spec.kwargs),
            )
        self.submitted.append((ref, [refs[u] for u in spec.upstream if u in refs]))
        return ref

    def cancelable(self) -> list[ray.ObjectRef]:
        """The submitted tasks that may be cancelled directly, downstream first.

        A task still waiting on an upstream task is left out: it fails when that upstream
        is cancelled. Cancelling it directly races Ray resolving its dependencies and
        crashes the cancelling process (reference_counter.cc "submitted_task_ref_count >
        0", ray-project/ray#56123; reproduced on Ray 2.60 by cancelling a fresh
        two-task chain).
        """
        chosen = []
        for ref, upstream in reversed(self.submitted):
            if upstream:
                _, waiting = ray.wait(
                    upstream, num_returns=len(upstream), timeout=0, fetch_local=False
                )
                if waiting:
                    continue
            chosen.append(ref)
        return chosen

    def _function(self, graph: Graph, key: str) -> Any:
        function = self._functions.get(key)
        if function is None:
            data = graph.functions[key]
            function = data if len(data) <= _INLINE_FUNCTION_BYTES else ray.put(data)
            self._functions[key] = function
        return function
