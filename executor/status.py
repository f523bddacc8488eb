"""Workflow and task statuses, as string enums so they store and print as themselves."""

from __future__ import annotations

from enum import Enum


class WorkflowStatus(str, Enum):
    #: An owner holds the lease and is executing it.
    RUNNING = "RUNNING"
    #: Submitted or resumed, not yet picked up by an owner.
    PENDING = "PENDING"
    SUCCESSFUL = "SUCCESSFUL"
    #: A task failed; resumable once the cause is fixed.
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    #: Nothing alive runs it any more (its owner died or its lease expired).
    RESUMABLE = "RESUMABLE"

    def __str__(self) -> str:
        return self.value


class TaskStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    #: Returned a continuation; finishes when the continuation's output does.
    CONTINUED = "CONTINUED"
    #: Suspended in ``sleep`` or ``wait_for_event``.
    WAITING = "WAITING"
    #: Waiting for a slot of its concurrency pool (no CPU held).
    QUEUED = "QUEUED"
    #: Failed an attempt; waiting out its retry backoff (no CPU held) before the next.
    RETRYING = "RETRYING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value


#: Statuses in which some process may still be working on the workflow.
ACTIVE = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.PENDING})
#: Statuses that take one of a schedule's ``max_active_runs`` slots: the active ones, and
#: RESUMABLE, unfinished work that recovery is about to pick up again.
HOLDS_SLOT = ACTIVE | {WorkflowStatus.RESUMABLE}
#: Statuses a workflow can be resumed from.
RESUMABLE_FROM = frozenset(
    {WorkflowStatus.FAILED, WorkflowStatus.RESUMABLE, WorkflowStatus.CANCELED}
)
