"""Durable state: workflows, tasks, checkpoints, leases and mailboxes.

``Store`` (``base.py``) is the contract; ``SqlStore.create(url)`` opens the SQLite or
PostgreSQL implementation. Callers see only the contract and the frozen records.
"""

from executor.store import postgres, sqlite  # noqa: F401  (register the databases)
from executor.store.base import Store
from executor.store.leases import LEASE_TTL, owner_id
from executor.store.records import (
    Admission,
    Checkpoint,
    EventRecord,
    Expand,
    NewTask,
    PoolRecord,
    QueueLimits,
    Rate,
    Rerun,
    ReserveIds,
    SlotWait,
    TaskAttempt,
    TaskFinish,
    TaskLog,
    TaskRecord,
    WorkflowRecord,
)
from executor.store.sql import SqlStore

__all__ = [
    "LEASE_TTL",
    "Admission",
    "Checkpoint",
    "EventRecord",
    "Expand",
    "NewTask",
    "PoolRecord",
    "QueueLimits",
    "Rate",
    "Rerun",
    "ReserveIds",
    "SlotWait",
    "SqlStore",
    "Store",
    "TaskAttempt",
    "TaskFinish",
    "TaskLog",
    "TaskRecord",
    "WorkflowRecord",
    "owner_id",
]
