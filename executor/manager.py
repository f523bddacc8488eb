"""The workflow manager: a detached, zero-CPU async actor that owns running workflows.

A workflow's life is decoupled from the script that started it: the manager submits
the tasks (so it owns their ObjectRefs), holds each workflow's lease and heartbeats it,
records the outcome, and answers ``wait`` calls. There is one manager per cluster and
database; a dead manager's workflows read RESUMABLE and any process can resume them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from executor.checkpoint import loads, preview, read_checkpoint
from executor.config import StoreConfig, handles
from executor.dag import Graph
from executor.errors import (
    WorkflowCancellationError,
    WorkflowError,
    WorkflowExecutionError,
    WorkflowNotResumableError,
)
from executor.graph_runner import GraphRunner
from executor.runtime import Continued
from executor.status import WorkflowStatus
from executor.store import LEASE_TTL, owner_id

log = logging.getLogger(__name__)

NAMESPACE = "gnomon"


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


class WorkflowManager:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.owner = owner_id(uuid.uuid4().hex[:12])
        self.executions: dict[str, asyncio.Task[Any]] = {}
        self.runners: dict[str, GraphRunner] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def owner_id(self) -> str:
        return self.owner

    async def run(self, workflow_id: str, graph: bytes | None, fresh: bool) -> Any:
        """Execute (or join the execution of) a workflow and return its output."""
        execution = await self.start(workflow_id, graph, fresh)
        return await asyncio.shield(execution)

    async def start(self, workflow_id: str, graph: bytes | None, fresh: bool) -> asyncio.Task:
        self._ensure_heartbeat()
        execution = self.executions.get(workflow_id)
        if execution is not None:
            return execution
        store, _ = handles(self.config)
        acquired = await asyncio.to_thread(store.acquire, workflow_id, self.owner)
        if not acquired:
            raise WorkflowNotResumableError(workflow_id, "another live process is running it")
        execution = asyncio.create_task(self._execute(workflow_id, graph, fresh))
        self.executions[workflow_id] = execution
        execution.add_done_callback(lambda _: self._forget(workflow_id))
        return execution

    def _forget(self, workflow_id: str) -> None:
        self.executions.pop(workflow_id, None)
        self.runners.pop(workflow_id, None)

    async def running(self) -> list[str]:
        return list(self.executions)

    async def cancel(self, workflow_id: str) -> bool:
        """Stop a workflow this manager runs; False if it runs nowhere here."""
        execution = self.executions.get(workflow_id)
        if execution is None:
            return False
        runner = self.runners.get(workflow_id)
        if runner is not None:
            for ref in runner.submitted:
                try:
                    ray.cancel(ref, recursive=True)
                except Exception:  # already finished, or not cancelable: nothing to stop
                    pass
        execution.cancel()
        try:
            await execution
        except (asyncio.CancelledError, WorkflowError):
            pass
        return True

    async def _execute(self, workflow_id: str, graph_data: bytes | None, fresh: bool) -> Any:
        store, blobs = handles(self.config)
        try:
            if graph_data is None:
                data, blob = await asyncio.to_thread(store.load_graph, workflow_id)
                graph_data = data if blob is None else blobs.get(blob)
            assert graph_data is not None
            graph: Graph = loads(graph_data)
            state = None
            if not fresh:
                records = await asyncio.to_thread(store.load_tasks, workflow_id)
                state = {record.task_id: record for record in records}
            runner = GraphRunner(self.config, workflow_id, state)
            self.runners[workflow_id] = runner
            output = await asyncio.to_thread(runner.submit, graph)
            value = await _follow(output)
        except asyncio.CancelledError:
            await asyncio.to_thread(store.finish, workflow_id, self.owner, WorkflowStatus.CANCELED)
            raise WorkflowCancellationError(workflow_id) from None
        except (RayError, WorkflowError) as error:
            cause = root_cause(error)
            await asyncio.to_thread(
                store.finish,
                workflow_id,
                self.owner,
                WorkflowStatus.FAILED,
                None,
                failure_text(cause),
            )
            raise WorkflowExecutionError(workflow_id, _one_line(cause)) from cause
        await asyncio.to_thread(
            store.finish, workflow_id, self.owner, WorkflowStatus.SUCCESSFUL, preview(value)
        )
        return value

    async def output(self, workflow_id: str, task_id: str | None = None) -> Any:
        """The output of a workflow (waiting for it if this manager runs it) or of a task."""
        execution = self.executions.get(workflow_id)
        if task_id is None and execution is not None:
            return await asyncio.shield(execution)
        store, blobs = handles(self.config)
        while True:
            record = await asyncio.to_thread(store.get_workflow, workflow_id)
            target = task_id or record.output_task_id
            assert target is not None
            task = await asyncio.to_thread(store.get_task, workflow_id, target)
            if task.output_task_id is not None:
                checkpoint = await asyncio.to_thread(
                    store.load_checkpoint, workflow_id, task.output_task_id
                )
                if checkpoint is not None:
                    return read_checkpoint(checkpoint, blobs)
            if record.status == WorkflowStatus.FAILED:
                raise WorkflowExecutionError(workflow_id, (record.error or "").strip()[-500:])
            if record.status == WorkflowStatus.CANCELED:
                raise WorkflowCancellationError(workflow_id)
            if record.status not in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING):
                raise WorkflowNotResumableError(
                    workflow_id, f"it is {record.status.value} and its output is not stored"
                )
            await asyncio.sleep(0.05)

    # ----------------------------------------------------------------- leases

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        store, _ = handles(self.config)
        while True:
            await asyncio.sleep(max(LEASE_TTL / 3, 0.2))
            owned = list(self.executions)
            if not owned:
                continue
            try:
                await asyncio.to_thread(store.renew, self.owner, owned)
                for workflow_id in owned:
                    record = await asyncio.to_thread(store.get_workflow, workflow_id)
                    if record.status == WorkflowStatus.CANCELED or record.owner != self.owner:
                        await self.cancel(workflow_id)
            except Exception:  # the database may be restarting; the next beat retries
                log.exception("lease heartbeat failed")


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return text[0] if text else type(error).__name__


async def _follow(ref: Any) -> Any:
    value = await ref
    while isinstance(value, Continued):
        value = await value.ref
    return value


_RemoteManager = ray.remote(num_cpus=0, max_restarts=0)(WorkflowManager)
_handles: dict[StoreConfig, Any] = {}


def manager_for(config: StoreConfig) -> Any:
    """The cluster's manager for this database, created on first use."""
    handle = _handles.get(config)
    if handle is None:
        digest = hashlib.sha1(f"{config.database_url}|{config.storage}".encode()).hexdigest()
        handle = _RemoteManager.options(
            name=f"gnomon-manager-{digest[:12]}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_concurrency=10000,
        ).remote(config)
        _handles[config] = handle
    return handle
